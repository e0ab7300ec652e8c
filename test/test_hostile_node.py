"""The node's pure parts (no rclpy) under hostile values: every parameter's check is
the core's, with the same words as the ``seqvpr`` option; decoded frames and poses
that are wrong are skipped or repaired, never fatal; maps that lie fail configure."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hostile import call

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # seqvpr_ros is installed by colcon, not by pip

from seqvpr_core.limits import SECONDS, THRESHOLD, TOP_K  # noqa: E402
from seqvpr_ros.outputs import Diagnostics  # noqa: E402
from seqvpr_ros.params import DEFAULTS, LIMITS, NodeSettings, check_value  # noqa: E402
from seqvpr_ros.session import ReceivedFrame, open_session  # noqa: E402

FLOATS = sorted(name for name, value in DEFAULTS.items() if isinstance(value, float))
INTS = sorted(name for name, value in DEFAULTS.items()
              if isinstance(value, int) and not isinstance(value, bool))


def test_every_numeric_parameter_has_a_limit():
    assert set(FLOATS) | set(INTS) == set(LIMITS)


@pytest.mark.parametrize("name", FLOATS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_float_parameters_are_refused(name, value):
    if name == "score_threshold" and value == -math.inf:  # the default: no threshold
        assert check_value(name, value) is None
        return
    problem = check_value(name, value)
    assert problem and problem.startswith(f"{name} must be a finite number")


@pytest.mark.parametrize("name,value,message", [
    ("top_k", 4_000_000, "top_k must be an integer in 1..1000, got 4000000"),
    ("window_max", 100_000, "window_max must be an integer in 0..1000"),
    ("queue_size", 10**9, "queue_size must be an integer in 1..1000"),
    ("max_batch", 0, "max_batch must be an integer in 1..4096, got 0"),
    ("diagnostics_period", 0.0, "diagnostics_period must be a finite number > 0 and <= 3600"),
    ("diagnostics_period", 1e12, "got 1000000000000.0"),
    ("loop_exclusion", -1.0, "loop_exclusion must be a finite number >= 0, got -1.0"),
    ("consistency", 0, "consistency must be an integer >= 1, got 0"),
    ("window_stride", -1, "window_stride must be an integer >= 0"),
])
def test_absurd_parameters_are_refused(name, value, message):
    assert message in check_value(name, value)


def test_the_node_and_the_cli_say_the_same_words(tmp_path, capsys):
    """top_k, score_threshold and loop_exclusion against --top-k, --threshold and
    --exclude-recent: one limit, one sentence after the name."""
    for param, option, limit, value in (("top_k", "--top-k", TOP_K, 5000),
                                        ("score_threshold", "--threshold", THRESHOLD, math.nan),
                                        ("loop_exclusion", "--exclude-recent", SECONDS, -2.0)):
        problem = limit.problem(value)
        assert check_value(param, value) == f"{param} {problem}"
        _, _, err = call(["localize", "--map", tmp_path, "--images", tmp_path, "--out",
                          tmp_path / "m.csv", f"{option}={value}"], capsys)
        assert f"argument {option}: {problem}" in err


def test_configure_refuses_nan_and_lists_every_problem():
    with pytest.raises(ValueError) as exc:
        NodeSettings.from_values({"map_path": "m", "loop_exclusion": math.nan,
                                  "score_threshold": math.inf})
    assert "loop_exclusion must be a finite number >= 0, got nan" in str(exc.value)
    assert "score_threshold must be a finite number (or -inf: none), got inf" in str(exc.value)


def test_diagnostics_carry_what_the_stream_repaired():
    from seqvpr_core.stream import StreamStats

    values = Diagnostics().values(10, 0, 0, 5, stream=StreamStats(frames=10, time_resets=2,
                                                                  duplicate_stamps=1,
                                                                  invalid_poses=3))
    assert values["time resets (stamps went back)"] == "2"
    assert values["duplicate stamps"] == "1" and values["invalid poses dropped"] == "3"
    assert "time resets (stamps went back)" not in Diagnostics().values(10, 0, 0, 5)


@pytest.fixture(scope="module")
def session():
    return open_session(NodeSettings.from_values({
        "mode": "slam", "model": "pixels+avg", "window_max": 2, "device": "cpu"}))


def test_bad_decoded_frames_are_skipped_alone_and_bad_poses_repaired(session):
    good = np.zeros((32, 64, 3), np.uint8)
    frames = [ReceivedFrame(0, (0.0, 0.0, 0.0), "cam", lambda: good),
              ReceivedFrame(1, None, "cam", lambda: None),
              ReceivedFrame(2, None, "cam", lambda: np.zeros((0, 0, 3), np.uint8)),
              ReceivedFrame(3, None, "cam", lambda: np.zeros((32, 64), np.uint8)),
              ReceivedFrame(4, (math.inf, 0.0, 0.0), "cam", lambda: good[..., ::-1]),
              ReceivedFrame(5, (1.0, math.nan, 0.0), "cam", lambda: good)]
    done = session.process(frames)
    assert done.frames == 3 and len(done.errors) == 3
    assert "decoded image is None" in done.errors[0] and "empty (0x0" in done.errors[1]
    assert "has shape (32, 64)" in done.errors[2]
    assert session.localizer.stats.invalid_poses == 2
    table = session.map.keyframes
    assert np.isfinite(table.column("x")[~np.isnan(table.column("x"))]).all()


def test_stamps_going_back_at_the_node_restart_the_windows(session):
    good = np.zeros((32, 64, 3), np.uint8)
    before = session.localizer.stats.time_resets
    session.process([ReceivedFrame(s, None, "cam", lambda: good) for s in (10, 11, 12)])
    done = session.process([ReceivedFrame(s, None, "cam", lambda: good) for s in (0, 1)])
    assert session.localizer.stats.time_resets == before + 1
    assert [[f.stamp_ns for f in r.frames] for r in done.results] == [[0, 1]]


def test_configure_refuses_a_map_that_lies(tmp_path):
    from seqvpr_core.maps import PlaceMap

    settings = {"mode": "slam", "model": "pixels+avg", "window_max": 2, "device": "cpu"}
    grown = open_session(NodeSettings.from_values(settings)).map
    grown.save(tmp_path / "map")
    manifest = json.loads((tmp_path / "map" / "manifest.json").read_text())
    manifest["metric"] = "l2"
    (tmp_path / "map" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="says metric 'l2' but index.faiss searches by inner"):
        open_session(NodeSettings.from_values({**settings, "map_path": str(tmp_path / "map")}))
    manifest["metric"], manifest["window"] = "ip", {}
    (tmp_path / "map" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="no window length: set window_max"):
        open_session(NodeSettings.from_values({**settings, "window_max": 0,
                                               "map_path": str(tmp_path / "map")}))
    assert isinstance(PlaceMap.load(tmp_path / "map"), PlaceMap)
