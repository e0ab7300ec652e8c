"""What ``seqvpr localize`` writes: per-window rows, loop-closure candidates, a plot."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence

from ..atomic import atomic_path, save_figure
from ..maps import Keyframe
from ..outputs import TABLE
from ..stream import WindowResult


def write_csv(path: str | os.PathLike, header: list[str], rows: Sequence[list]) -> None:
    """Atomic CSV write; replaces only a table seqvpr wrote."""
    with atomic_path(path, TABLE) as tmp, \
            tmp.open("w", newline="", errors="surrogateescape") as f:  # any file name
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_jsonl(path: str | os.PathLike, records: Sequence[dict]) -> None:
    """Atomic JSON-lines write, one object per line; replaces only a table seqvpr wrote."""
    with atomic_path(path, TABLE) as tmp, tmp.open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def _pose(p) -> list[float] | None:
    return None if p is None or math.isnan(p[0]) else [float(v) for v in p]


def _kf_pose(kf: Keyframe) -> list[float] | None:
    return [kf.x, kf.y, kf.heading] if kf.has_pose else None


def window_record(r: WindowResult) -> dict:
    """One window as a JSON-ready dict (stamps in ns, poses [x, y, heading] or null)."""
    return {
        "query_index": r.last.index, "query_name": r.last.name,
        "query_stamp_ns": r.last.stamp_ns, "window_start_ns": r.frames[0].stamp_ns,
        "window_length": len(r.frames), "pose": _pose(r.last.pose),
        "keyframe_id": r.keyframe_id,
        "loop_closure_id": None if r.loop_closure is None else r.loop_closure.match.keyframe_id,
        "matches": [{"rank": m.rank, "id": m.keyframe_id, "index": m.keyframe.last_index,
                     "name": m.keyframe.name, "stamp_ns": m.keyframe.end_ns,
                     "score": round(m.score, 6), "pose": _kf_pose(m.keyframe)}
                    for m in r.matches],
    }


def window_row(r: WindowResult) -> list:
    row = [r.last.index, r.last.name,
           "" if r.loop_closure is None else r.loop_closure.match.keyframe_id]
    for m in r.matches:
        row += [m.keyframe_id, m.keyframe.last_index, m.keyframe.name, f"{m.score:.6f}"]
    return row


def window_header(top_k: int) -> list[str]:
    header = ["query_index", "query_name", "loop_closure_id"]
    for k in range(1, top_k + 1):
        header += [f"match{k}_id", f"match{k}_index", f"match{k}_name", f"match{k}_score"]
    return header


LOOP_COLUMNS = ["query_index", "query_name", "query_stamp_ns", "query_x", "query_y",
                "match_id", "match_name", "match_stamp_ns", "match_x", "match_y", "score",
                "consistent_windows"]


def loop_record(r: WindowResult) -> dict:
    lc = r.loop_closure
    assert lc is not None
    q = _pose(r.last.pose) or [math.nan] * 3
    kf = lc.match.keyframe
    return dict(zip(LOOP_COLUMNS, [
        lc.query_index, r.last.name, lc.query_stamp_ns, q[0], q[1], lc.match.keyframe_id,
        kf.name, kf.end_ns, kf.x, kf.y, round(lc.match.score, 6), lc.consistent_windows],
        strict=True))


def plot_trajectory(path: str | os.PathLike, results: Sequence[WindowResult],
                    map_keyframes: Sequence[Keyframe], title: str) -> bool:
    """Map keyframes, the query trajectory and a line per loop closure; False without poses."""
    query = [r.last.pose for r in results if _pose(r.last.pose) is not None]
    mapped = [(k.x, k.y) for k in map_keyframes if k.has_pose]
    if not query and not mapped:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    if mapped:
        ax.plot(*zip(*mapped, strict=True), ".", color="0.6", ms=3, label="map keyframes")
    if query:
        ax.plot([p[0] for p in query], [p[1] for p in query], "-", color="tab:blue", lw=1.2,
                label="query trajectory")
    n_loops = 0
    for r in results:
        lc = r.loop_closure
        if lc is None or _pose(r.last.pose) is None or not lc.match.keyframe.has_pose:
            continue
        kf = lc.match.keyframe
        ax.plot([r.last.pose[0], kf.x], [r.last.pose[1], kf.y], "-", color="tab:red", lw=0.8,
                alpha=0.7, label=None if n_loops else "loop closures")
        n_loops += 1
    ax.set(xlabel="x (m)", ylabel="y (m)", title=f"{title}: {n_loops} loop closures")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="best")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    return True
