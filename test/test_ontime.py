"""On-time recall: FIFO finish times, deadlines and the timed replay, on a fake clock."""

from __future__ import annotations

import numpy as np
import pytest

from seqvpr_core.data import read_image
from seqvpr_core.eval.ontime import fifo_finish_times, on_time_recall, replay_timed
from seqvpr_core.maps import PlaceMap
from seqvpr_core.models import build_model
from seqvpr_core.stream import FrameInfo, LocalizerConfig, StreamingLocalizer, WindowConfig


class FakeClock:
    """Each frame takes the next of ``durations`` seconds (two clock reads per frame)."""

    def __init__(self, durations):
        self.t, self.durations, self.calls = 0.0, list(durations), 0

    def __call__(self) -> float:
        if self.calls % 2:  # the read after a frame: its duration has passed
            self.t += self.durations[self.calls // 2]
        self.calls += 1
        return self.t


def test_fast_processor_never_queues():
    finish, max_queue = fifo_finish_times(np.full(5, 0.05), fps=10)
    np.testing.assert_allclose(finish, [0.05, 0.15, 0.25, 0.35, 0.45])
    assert max_queue == 1


def test_slow_processor_falls_behind():
    """0.15 s per frame at 10 Hz: every frame finishes later than the last."""
    finish, max_queue = fifo_finish_times(np.full(6, 0.15), fps=10)
    np.testing.assert_allclose(finish, 0.15 * np.arange(1, 7))
    assert max_queue == 3


def test_one_slow_frame_makes_the_next_late_too():
    service = np.array([0.05, 0.12, 0.05, 0.01, 0.01])
    ranked = np.arange(5)[:, None]  # every answer is right
    positives = [np.array([q]) for q in range(5)]
    r = on_time_recall(ranked, positives, np.arange(5), service, fps=10, ks=(1,))
    # finish: .05 .22 .27 .31 .41; deadlines .1 .2 .3 .4 .5 -> frame 1 is late
    assert r.recall == {1: 1.0}
    assert r.on_time_recall == {1: 0.8}
    assert r.on_time_fraction == pytest.approx(0.8)


def test_wrong_answers_stay_wrong_when_on_time():
    ranked = np.array([[0], [7], [2]])
    positives = [np.array([0]), np.array([1]), np.array([2])]
    r = on_time_recall(ranked, positives, np.arange(3), np.full(3, 0.01), fps=30, ks=(1,))
    assert r.recall[1] == r.on_time_recall[1] == pytest.approx(2 / 3)


def test_rate_changes_only_timeliness():
    """One replay answers both rates: 50 ms per frame is on time at 10 Hz, late at 30 Hz."""
    service = np.full(20, 0.05)
    ranked, positives = np.arange(20)[:, None], [np.array([q]) for q in range(20)]
    at10 = on_time_recall(ranked, positives, np.arange(20), service, 10, ks=(1,))
    at30 = on_time_recall(ranked, positives, np.arange(20), service, 30, ks=(1,))
    assert at10.on_time_recall[1] == 1.0 and at30.on_time_recall[1] < 0.1
    assert at30.max_queue > at10.max_queue


def test_timed_replay_matches_plain_streaming(summer):
    """The timed replay returns the localizer's own results and the clock's durations."""
    model = build_model("pixels+avg")
    window = WindowConfig.fixed(3)
    frames = [read_image(p) for p in summer.paths[:12]]
    infos = [FrameInfo(i, i * 100) for i in range(12)]
    ref_map = PlaceMap(model.descriptor_dim)
    mapper = StreamingLocalizer(model, ref_map, LocalizerConfig("mapping", window))
    mapper.feed(frames, [i.stamp_ns for i in infos])
    plain = StreamingLocalizer(model, ref_map, LocalizerConfig("localize", window))
    expected = plain.feed(frames, [i.stamp_ns for i in infos])
    durations = np.linspace(0.01, 0.12, 12)
    loc = StreamingLocalizer(model, ref_map, LocalizerConfig("localize", window))
    timed = replay_timed(loc, frames, infos, clock=FakeClock(durations))
    np.testing.assert_allclose(timed.service_s, durations)
    np.testing.assert_array_equal(timed.window_end, np.arange(2, 12))
    assert [r.matches[0].keyframe_id for r in timed.results] == \
        [r.matches[0].keyframe_id for r in expected]
    features = model.encode_frames(frames)
    loc.reset()
    again = replay_timed(loc, features, infos, clock=FakeClock(durations), encoded=True)
    np.testing.assert_allclose(again.results[-1].descriptor, expected[-1].descriptor, atol=1e-6)
