"""The streaming localizer: encode once, windows, slam exclusion, gate, and
equality with an independent batch computation."""

from __future__ import annotations

import math

import faiss
import numpy as np
import pytest
import torch

from seqvpr_core.data import read_image
from seqvpr_core.maps import Keyframe, Match, PlaceMap
from seqvpr_core.models import build_model
from seqvpr_core.models.base import FrameEncoder
from seqvpr_core.stream import (
    GateConfig,
    LocalizerConfig,
    LoopClosureGate,
    StreamingLocalizer,
    WindowConfig,
)


def frames_of(traversal, n):
    return [read_image(p) for p in traversal.paths[:n]]


def new_map(model) -> PlaceMap:
    return PlaceMap.for_model(model)


class CountingEncoder(FrameEncoder):
    """Wraps an encoder and counts the frames it sees."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.frames = inner, 0
        self.dim, self.preprocess = inner.dim, inner.preprocess

    @property
    def out_shape(self):
        return self.inner.out_shape

    def forward(self, x):
        self.frames += x.shape[0]
        return self.inner(x)


@pytest.mark.parametrize("window", [WindowConfig(3, 8, 1), WindowConfig(5, 5, 2)])
def test_each_frame_is_encoded_once(summer, window):
    model = build_model("pixels+avg")
    model.encoder = CountingEncoder(model.encoder)
    loc = StreamingLocalizer(model, new_map(model), LocalizerConfig("mapping", window))
    frames = frames_of(summer, 40)
    results = loc.feed(frames[:17], range(17)) + [
        r for i, f in enumerate(frames[17:], 17) if (r := loc.step(f, i)) is not None]
    assert model.encoder.frames == 40
    assert sum(len(r.frames) for r in results) > 40  # windows really share frames


def test_windows_grow_from_min_to_max_then_slide_with_stride():
    w = WindowConfig(min_len=3, max_len=5, stride=2)
    lengths = {n: w.length_at(n) for n in range(1, 12)}
    assert lengths == {1: None, 2: None, 3: 3, 4: None, 5: 5, 6: None, 7: 5, 8: None,
                       9: 5, 10: None, 11: 5}
    with pytest.raises(ValueError):
        WindowConfig(5, 3)


def test_given_window_values_override_what_a_map_records():
    """One rule for ``localize --window/--min-len/--stride`` and the node's window_*."""
    recorded = {"min_len": 3, "max_len": 10, "stride": 2}
    assert WindowConfig.override(recorded) == WindowConfig(3, 10, 2)
    assert WindowConfig.override(recorded, max_len=5) == WindowConfig(5, 5, 2)  # fixed 5
    assert WindowConfig.override(recorded, min_len=1, stride=1) == WindowConfig(1, 10, 1)
    assert WindowConfig.override({}, max_len=4) == WindowConfig(4, 4, 1)
    with pytest.raises(ValueError, match="no window length"):
        WindowConfig.override({}, min_len=2)


def test_fixed_length_model_refuses_variable_windows():
    model = build_model("pixels+cat", window=5)
    with pytest.raises(ValueError, match="exactly 5 frames"):
        StreamingLocalizer(model, new_map(model), LocalizerConfig("mapping", WindowConfig(3, 5)))


def test_map_of_another_model_is_refused():
    a, b = build_model("pixels+avg"), build_model("pixels+max")
    with pytest.raises(ValueError, match="fingerprint"):
        StreamingLocalizer(b, new_map(a), LocalizerConfig("localize", WindowConfig(3, 3)))


@pytest.mark.parametrize("spec,length", [("pixels+cat", 5), ("efficientnet_lite0+seqgem", 4)])
def test_streaming_equals_batch_reference(summer, winter, spec, length):
    """Frame-by-frame streaming returns what a batch computation (all frames
    encoded at once, all windows unfolded, one FAISS search) returns."""
    model = build_model(spec, window=length)
    db, q = frames_of(summer, 30), frames_of(winter, 30)
    window = WindowConfig.fixed(length)
    place_map = new_map(model)
    StreamingLocalizer(model, place_map, LocalizerConfig("mapping", window)).feed(db, range(30))
    loc = StreamingLocalizer(model, place_map, LocalizerConfig("localize", window, top_k=5))
    streamed = [r for i, f in enumerate(q) if (r := loc.step(f, i)) is not None]

    with torch.inference_mode():
        def descriptors(frames):
            feats = model.encode_frames(frames)  # [N, D]
            wins = feats.unfold(0, length, 1).permute(0, 2, 1)  # [N-L+1, L, D]
            return model.aggregate(wins).numpy()
        xb, xq = descriptors(db), descriptors(q)
    index = faiss.IndexFlatIP(xb.shape[1])
    index.add(xb)
    D, I = index.search(xq, 5)

    assert len(streamed) == len(xq) == 30 - length + 1
    np.testing.assert_array_equal([[m.keyframe_id for m in r.matches] for r in streamed], I)
    np.testing.assert_allclose([[m.score for m in r.matches] for r in streamed], D, atol=1e-5)


@pytest.mark.parametrize("exclude_s,exclude_kf", [(0.0, 0), (12.0, 0), (0.0, 7)])
def test_slam_never_returns_candidates_inside_the_exclusion(summer, exclude_s, exclude_kf):
    model = build_model("pixels+avg")
    frames = frames_of(summer, 60) * 2  # the route twice: a revisit
    stamps = [i * 1_000_000_000 for i in range(len(frames))]
    config = LocalizerConfig("slam", WindowConfig.fixed(4), top_k=10,
                             exclude_recent_s=exclude_s, exclude_recent_keyframes=exclude_kf)
    place_map = new_map(model)
    loc = StreamingLocalizer(model, place_map, config)
    results = loc.feed(frames, stamps)
    assert len(place_map) == len(results)
    revisit_hits = 0
    for r in results:
        start = r.frames[0].stamp_ns
        for m in r.matches:
            assert m.keyframe.end_ns < start - exclude_s * 1e9  # no shared frames either
            assert m.keyframe_id < r.keyframe_id - exclude_kf
        if r.last.index >= 60 and r.matches:
            revisit_hits += r.matches[0].keyframe.last_index == r.last.index - 60
    assert revisit_hits > 40  # the second pass finds the first


def _match(kf_id: int, score: float) -> Match:
    return Match(0, kf_id, score, Keyframe(0, 0, 1, kf_id, kf_id, "", math.nan, math.nan))


def test_gate_needs_threshold_and_consistent_windows():
    gate = LoopClosureGate(GateConfig(threshold=0.5, consistency=3, tolerance=2))
    fired = [gate.update([_match(i, s)], 0, 0) is not None for i, s in
             [(10, 0.9), (11, 0.9), (12, 0.9), (13, 0.9), (40, 0.9), (41, 0.9), (42, 0.3),
              (43, 0.9), (44, 0.9), (45, 0.9)]]
    assert fired == [False, False, True, True, False, False, False, False, False, True]


def test_gate_needs_matches_that_move_on_with_the_query():
    """A static alias (a tunnel matched again and again) or a wandering match never opens
    the gate; a chain that moves on one map entry per window does, give or take the
    tolerance; a map of another stride moves on at the ratio of the strides."""
    def fired(ids, advance=1.0, tolerance=1):
        gate = LoopClosureGate(GateConfig(0.0, consistency=5, tolerance=tolerance), advance)
        return [gate.update([_match(i, 0.9)], 0, 0) is not None for i in ids]

    assert not any(fired([7] * 10))  # stands still
    assert not any(fired([7, 8, 7, 8, 7, 8, 7, 8]))  # goes back and forth
    assert not any(fired([10, 12, 14, 16, 18, 20]))  # twice the pace: drifts 4 entries
    assert fired([10, 11, 12, 13, 14, 15]) == [False] * 4 + [True, True]
    assert fired([10, 11, 11, 13, 14, 15]) == [False] * 4 + [True, True]  # drift 1 ok
    assert fired([10, 12, 14, 16, 18], tolerance=4)[-1]
    assert fired([10, 10, 11, 11, 12, 12], advance=0.5)[-2:] == [True, True]
    with pytest.raises(ValueError, match="advance must be > 0"):
        LoopClosureGate(GateConfig(), advance=0)


def test_reset_restarts_windows_but_not_frame_indices(summer):
    """After a gap no window spans it, and default frame indices stay unique."""
    model = build_model("pixels+avg")
    loc = StreamingLocalizer(model, new_map(model), LocalizerConfig("mapping",
                                                                    WindowConfig.fixed(3)))
    frames = frames_of(summer, 8)
    first = loc.feed(frames[:4], range(4))
    loc.reset()
    second = loc.feed(frames[4:], range(4, 8))
    assert [r.last.index for r in first] == [2, 3]
    assert [[f.index for f in r.frames] for r in second] == [[4, 5, 6], [5, 6, 7]]
