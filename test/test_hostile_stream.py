"""The streaming API under hostile input: frames of every wrong kind, stamps that go
back or repeat, non-finite poses, empty batches, and configs with NaN or absurd values.
Each case is what the stream's docstring promises: a ValueError naming the frame, or
a documented repair that is counted in ``stats``."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from seqvpr_core.data import read_image
from seqvpr_core.maps import Keyframe, PlaceMap
from seqvpr_core.models import build_model
from seqvpr_core.stream import GateConfig, LocalizerConfig, StreamingLocalizer, WindowConfig


@pytest.fixture(scope="module")
def model():
    return build_model("pixels+avg")


@pytest.fixture(scope="module")
def frames(summer):
    return [read_image(p) for p in summer.paths[:12]]


THREE = WindowConfig.fixed(3)


def localizer(model, mode="mapping", window=THREE, **kw):
    return StreamingLocalizer(model, PlaceMap.for_model(model),
                              LocalizerConfig(mode, window, **kw))


@pytest.mark.parametrize("frame,message", [
    (None, "frame 0 of the batch is None; expected a numpy uint8 RGB image"),
    ([[0, 0, 0]], "frame 0 of the batch is a list"),
    (np.zeros((0, 0, 3), np.uint8), "frame 0 of the batch is empty (0x0 pixels)"),
    (np.zeros((4, 0, 3), np.uint8), "is empty (0x4 pixels)"),
    (np.zeros((8, 8, 3), np.float32), "has dtype float32; expected uint8"),
    (np.zeros((8, 8), np.uint8), "has shape (8, 8); expected [H, W, 3] RGB"),
    (np.zeros((8, 8, 4), np.uint8), "has shape (8, 8, 4)"),
    (np.zeros((8, 8, 3), np.uint16), "has dtype uint16"),
    (torch.zeros(8, 8, 3, dtype=torch.uint8), "is a Tensor"),
])
def test_wrong_frames_are_refused_naming_the_frame(model, frame, message):
    loc = localizer(model)
    with pytest.raises(ValueError) as exc:
        loc.step(frame, 0)
    assert message in str(exc.value)
    assert loc.stats.frames == 0 and len(loc.ring) == 0  # nothing half-pushed


def test_an_oversized_frame_is_refused_before_it_is_encoded(model):
    big = np.broadcast_to(np.zeros(3, np.uint8), (9000, 9000, 3))  # no memory behind it
    with pytest.raises(ValueError, match="9000x9000 pixels, more than seqvpr takes"):
        localizer(model).step(big, 0)


def test_a_negative_stride_view_is_accepted_and_equals_the_copy(model, frames):
    bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames[:3]]
    views = [b[..., ::-1] for b in bgr]  # the usual BGR -> RGB view
    assert views[0].strides[-1] < 0
    a = localizer(model).feed(views, [0, 1, 2])
    b = localizer(model).feed(frames[:3], [0, 1, 2])
    np.testing.assert_array_equal(a[0].descriptor, b[0].descriptor)
    # mixed sizes go through the per-frame resize path, views included
    mixed = [views[0], np.ascontiguousarray(views[1][:20])[..., ::-1][..., ::-1], views[2]]
    assert len(localizer(model).feed(mixed, [0, 1, 2])) == 1


def test_empty_batches_yield_nothing(model):
    loc = localizer(model)
    assert loc.feed([], []) == []
    assert loc.push_features(torch.zeros(0, *model.frame_shape), []) == []
    assert tuple(model.encode_frames([]).shape) == (0, *model.frame_shape)


@pytest.mark.parametrize("stamps,message", [
    ([float("nan")], "stamp of frame 0 of the batch must be whole nanoseconds, got nan"),
    ([float("inf")], "got inf"),
    (["12"], "got '12'"),
    ([None], "got None"),
    ([1, 2], "1 frames but 2 stamps"),
])
def test_bad_stamps_are_refused(model, frames, stamps, message):
    with pytest.raises(ValueError) as exc:
        localizer(model).feed(frames[:1], stamps)
    assert message in str(exc.value)


def test_time_going_back_restarts_the_windows_once_said_and_counted(model, frames, caplog):
    loc = localizer(model, window=WindowConfig.fixed(3))
    stamps = [0, 1, 2, 3, 1, 2, 3, 0, 1, 2, 3, 4]  # two clock resets
    with caplog.at_level(logging.WARNING, "seqvpr_core.stream.localizer"):
        results = loc.feed(frames, stamps)
    # windows: [0..2], [1..3], then none spans a jump: [1,2,3] again, [0..2], [1..3], [2..4]
    starts = [[f.stamp_ns for f in r.frames] for r in results]
    assert starts == [[0, 1, 2], [1, 2, 3], [1, 2, 3], [0, 1, 2], [1, 2, 3], [2, 3, 4]]
    assert all(r.keyframe().end_ns >= r.keyframe().start_ns for r in results)
    assert loc.stats.time_resets == 2
    warnings = [r for r in caplog.records if "time went backwards" in r.message]
    assert len(warnings) == 1  # said once


def test_duplicate_stamps_are_kept_and_counted(model, frames, caplog):
    loc = localizer(model)
    with caplog.at_level(logging.WARNING, "seqvpr_core.stream.localizer"):
        results = loc.feed(frames[:5], [0, 1, 1, 1, 2])
    assert len(results) == 3 and loc.stats.duplicate_stamps == 2
    assert sum("share stamp" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize("pose,stored", [
    ((math.inf, 0.0, 0.0), None), ((0.0, -math.inf, 0.0), None), ((math.nan, 1.0, 0.0), None),
    ((math.nan, math.nan, math.nan), None), ((1.0, 2.0, math.inf), (1.0, 2.0, math.nan)),
    ((1.0, 2.0, 30.0), (1.0, 2.0, 30.0)),
])
def test_non_finite_poses_are_never_stored_as_poses(model, frames, pose, stored):
    loc = localizer(model, window=WindowConfig.fixed(1))
    result = loc.step(frames[0], 0, pose=pose)
    kf = loc.map.keyframes[result.keyframe_id]
    if stored is None:
        assert result.last.pose is None and not kf.has_pose
    else:
        assert (kf.x, kf.y) == stored[:2]
        assert math.isnan(kf.heading) if math.isnan(stored[2]) else kf.heading == stored[2]
    assert loc.stats.invalid_poses == int(stored is None and not math.isnan(pose[0] + pose[1])
                                          or pose[:2] == (math.nan, 1.0))


def test_a_pose_that_is_not_three_numbers_is_refused(model, frames):
    with pytest.raises(ValueError, match=r"pose of frame 0 must be \(x, y, heading\)"):
        localizer(model).step(frames[0], 0, pose=(1.0, 2.0))


@pytest.mark.parametrize("reset", [False, True], ids=["clock-jump", "reset-then-replay"])
def test_slam_exclusion_stays_right_after_the_clock_goes_back(model, frames, reset):
    """Entries made before a clock reset are older than anything after it: they become
    candidates, while the recent past after the reset stays excluded; the same after
    reset() and a bag replayed from an earlier stamp."""
    loc = localizer(model, "slam", WindowConfig.fixed(1), exclude_recent_s=2.5)
    s = 1_000_000_000
    for i, stamp in enumerate([100 * s, 101 * s, 102 * s, 103 * s]):
        loc.step(frames[i], stamp)
    before_reset = len(loc.map)
    if reset:
        loc.reset()
    r = loc.step(frames[4], 0)  # the clock restarts at 0
    assert r.matches and max(m.keyframe_id for m in r.matches) < before_reset
    r = loc.step(frames[5], 1 * s)
    assert all(m.keyframe_id < before_reset for m in r.matches)  # 0 s is within 2.5 s
    r = loc.step(frames[6], 4 * s)
    assert any(m.keyframe_id == before_reset for m in r.matches)  # 0 s is 4 s ago


@pytest.mark.parametrize("make,message", [
    (lambda: LocalizerConfig(gate=GateConfig(threshold=math.nan)),
     "gate threshold must be a finite number (or -inf: none), got nan"),
    (lambda: LocalizerConfig(gate=GateConfig(threshold=math.inf)), "got inf"),
    (lambda: LocalizerConfig(exclude_recent_s=math.nan),
     "exclude_recent_s must be a finite number >= 0, got nan"),
    (lambda: LocalizerConfig(exclude_recent_s=-1.0), "got -1.0"),
    (lambda: LocalizerConfig(top_k=4_000_000), "top_k must be an integer in 1..1000"),
    (lambda: LocalizerConfig(top_k=2.5), "top_k must be an integer"),
    (lambda: LocalizerConfig(exclude_recent_keyframes=-3), "exclude_recent_keyframes must"),
    (lambda: WindowConfig(0, 3), "window min_len must be an integer in 1..1000, got 0"),
    (lambda: WindowConfig(3, 10**9), "window max_len must be an integer in 1..1000"),
    (lambda: WindowConfig(3, 3, 0), "window stride must be an integer >= 1, got 0"),
    (lambda: WindowConfig(5, 3), "need min_len <= max_len"),
])
def test_configs_refuse_nan_and_absurd_values(make, message):
    with pytest.raises(ValueError) as exc:
        make()
    assert message in str(exc.value)


def test_keyframes_ending_before_they_start_are_refused():
    with pytest.raises(ValueError, match="ends at 5 ns, before its start 10 ns"):
        Keyframe(10, 5, 2, 0, 1)
    with pytest.raises(ValueError, match="infinite pose"):
        Keyframe(0, 5, 2, 0, 1, x=math.inf, y=0.0)
