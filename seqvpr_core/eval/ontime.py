"""On-time recall: Recall@K that only counts answers ready before the next frame.

The protocol of Adapt-STformer (Kiu et al., 2025): a query stream is replayed
at a fixed frame rate; frames wait in a FIFO and are processed in order, one
at a time; the answer for the window ending at frame i counts only if it is
ready before frame i+1 arrives (its deadline). A system slower than the frame
rate falls behind, its queue grows and its later answers are all late, however
accurate they are: this is what a robot sees and plain Recall@K hides.

Timing is separated from retrieval: :func:`replay_timed` runs the localizer
and records each frame's service time with an injectable clock (a fake clock
in tests); :func:`fifo_finish_times` turns service times into finish times at
a given rate, so one replay gives on-time recall at 30 Hz and at 10 Hz.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..stream import FrameInfo, StreamingLocalizer, WindowResult
from .recall import RECALL_VALUES, recall_at_k


@dataclass(frozen=True)
class TimedReplay:
    """What a replay produced and how long each frame took."""

    service_s: np.ndarray  # float64 [F]: seconds frame f held the processor
    results: list[WindowResult]  # every completed window, in stream order
    window_end: np.ndarray  # int64 [Q]: position in the stream of each window's last frame


@dataclass(frozen=True)
class OnTimeResult:
    fps: float
    recall: dict[int, float]  # plain Recall@K
    on_time_recall: dict[int, float]  # correct AND ready before the next frame
    on_time_fraction: float  # queries answered in time
    max_queue: int  # most frames waiting in the FIFO at once
    mean_latency_ms: float  # frame arrival -> answer ready, over queries


def replay_timed(localizer: StreamingLocalizer, features_or_frames: Sequence,
                 infos: Sequence[FrameInfo], clock: Callable[[], float] = time.perf_counter,
                 encoded: bool = False) -> TimedReplay:
    """Process a stream one frame at a time, as a robot does, timing every frame.

    ``features_or_frames``: uint8 RGB frames [H, W, 3] (the full path: preprocess,
    encode, ring, aggregate, search, gate), or with ``encoded`` already-encoded
    features [F, *frame_shape] (the encoder cost is then not counted).
    """
    service = np.zeros(len(infos))
    results: list[WindowResult] = []
    ends: list[int] = []
    for f, (item, info) in enumerate(zip(features_or_frames, infos, strict=True)):
        t0 = clock()
        if encoded:
            out = localizer.push_features(item[None], [info])
        else:
            out = localizer.feed([item], [info.stamp_ns], [info.pose], [info.name],
                                 [info.index], info.source)
        service[f] = clock() - t0
        results.extend(out)
        ends.extend([f] * len(out))
    return TimedReplay(service, results, np.asarray(ends, dtype=np.int64))


def fifo_finish_times(service_s: np.ndarray, fps: float) -> tuple[np.ndarray, int]:
    """Frame f arrives at f/fps, waits for the processor, then takes service_s[f].

    Returns (finish time of every frame in seconds [F], most frames queued at once).
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    arrival = np.arange(len(service_s)) / fps
    finish = np.empty(len(service_s))
    busy_until = 0.0
    for f, (a, s) in enumerate(zip(arrival, service_s, strict=True)):
        busy_until = max(busy_until, a) + s
        finish[f] = busy_until
    # frames that have arrived but not finished when each frame arrives
    queued = np.arange(len(finish)) + 1 - np.searchsorted(finish, arrival, side="right")
    return finish, int(queued.max()) if len(queued) else 0


def on_time_recall(ranked: np.ndarray, positives: Sequence[np.ndarray], window_end: np.ndarray,
                   service_s: np.ndarray, fps: float,
                   ks: Sequence[int] = RECALL_VALUES) -> OnTimeResult:
    """Recall@K next to on-time Recall@K at ``fps``.

    ``ranked``: int64 [Q, k] map ids per query window, best first; ``window_end``:
    the stream position of each query's last frame, whose arrival starts its clock.
    """
    finish, max_queue = fifo_finish_times(service_s, fps)
    arrival = window_end / fps
    ready = finish[window_end]
    on_time = ready < arrival + 1.0 / fps
    plain = recall_at_k(ranked, positives, ks)
    late = ranked.copy()
    late[~on_time] = -1  # a late answer is no answer
    return OnTimeResult(fps, plain, recall_at_k(late, positives, ks), float(on_time.mean()),
                        max_queue, float(1000 * (ready - arrival).mean()))
