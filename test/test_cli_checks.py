"""The first minute with ``seqvpr``: help at once, mismatches refused before the work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, copy_frames

from seqvpr_core import catalog
from seqvpr_core.cli.main import build_parser, main
from seqvpr_core.models import SequenceModel, list_aggregators, list_encoders

HEAVY = ("torch", "torchvision", "numpy", "faiss", "cv2", "matplotlib", "onnxruntime", "rosbags")


def test_help_imports_nothing_heavy():
    """``seqvpr --help`` and every ``COMMAND --help``, each in a fresh interpreter as a
    user runs them: none imports torch, numpy, FAISS or OpenCV (12-17 s before)."""
    commands = list(build_parser()._subparsers._group_actions[0].choices)
    script = (
        "import sys\n"
        "from seqvpr_core.cli.main import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for argv in [["--help"]] + [[c, "--help"] for c in commands]:
        run = subprocess.run([sys.executable, "-c", script, *argv], env=env,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert "usage: seqvpr" in run.stdout
        assert run.stdout.strip().endswith("[]"), (argv, run.stdout.splitlines()[-1])


def test_the_help_names_are_the_registries():
    assert tuple(list_encoders()) == catalog.ENCODERS
    assert tuple(list_aggregators()) == catalog.AGGREGATORS


@pytest.fixture(scope="module")
def folders(tmp_path_factory, nordland):
    root = tmp_path_factory.mktemp("nordland")
    return (copy_frames(nordland / "summer", root / "summer", 30),
            copy_frames(nordland / "winter", root / "winter", 30))


@pytest.fixture(scope="module")
def fc5(tmp_path_factory):
    """A fixed-length checkpoint: FC fusion of exactly 5 frames."""
    path = tmp_path_factory.mktemp("ckpt") / "fc5.pt"
    SequenceModel({"encoder": "pixels",
                   "aggregator": {"name": "fc", "length": 5, "out_dim": 32}}).save(path)
    return path


@pytest.mark.parametrize("command", ["eval", "build-map"])
def test_a_fixed_length_model_refuses_another_window_before_reading_frames(
        command, fc5, tmp_path, capsys):
    """The folders do not exist: the window mismatch is found before any frame is read."""
    missing = str(tmp_path / "no_such_folder")
    argv = {"eval": ["eval", "--db", missing, "--query", missing, "--tolerance", "1",
                     "--json", str(tmp_path / "r.json")],
            "build-map": ["build-map", "--images", missing, "--out", str(tmp_path / "map")]}
    assert main([*argv[command], "--model", str(fc5), "--window", "4"]) == 2
    assert "needs windows of exactly 5 frames" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_without_window_a_fixed_length_model_uses_its_own(fc5, folders, tmp_path):
    assert main(["build-map", "--images", str(folders[0]), "--model", str(fc5),
                 "--out", str(tmp_path / "map")]) == 0
    manifest = json.loads((tmp_path / "map" / "manifest.json").read_text())
    assert manifest["window"]["max_len"] == 5 and manifest["count"] == 26


def test_build_map_says_which_index_and_why(folders, tmp_path, capsys):
    assert main(["build-map", "--images", str(folders[0]), "--model", "pixels+avg",
                 "--window", "3", "--out", str(tmp_path / "map")]) == 0
    out = capsys.readouterr().out
    assert "index: Flat (exact search: 28 windows x 512-d" in out and "budget" in out


@pytest.fixture(scope="module")
def avg_map(folders, tmp_path_factory):
    path = tmp_path_factory.mktemp("avg") / "map"
    assert main(["build-map", "--images", str(folders[0]), "--model", "pixels+avg",
                 "--window", "5", "--out", str(path)]) == 0
    return path


def test_localize_window_other_than_the_maps_is_used_and_said(avg_map, folders, tmp_path,
                                                              capsys):
    """A variable-length model queries with --window, and says it differs from the map."""
    out = tmp_path / "m.csv"
    assert main(["localize", "--map", str(avg_map), "--images", str(folders[1]),
                 "--window", "3", "--out", str(out)]) == 0
    assert "query windows 3..3 frames, stride 1; the map's are 5..5" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 1 + 28


def test_localize_window_a_fixed_length_map_cannot_take_is_refused(fc5, folders, tmp_path,
                                                                   capsys):
    assert main(["build-map", "--images", str(folders[0]), "--model", str(fc5),
                 "--out", str(tmp_path / "map")]) == 0
    assert main(["localize", "--map", str(tmp_path / "map"), "--images", str(tmp_path / "no"),
                 "--window", "4", "--out", str(tmp_path / "m.csv")]) == 2
    assert "needs windows of exactly 5 frames" in capsys.readouterr().err


def test_localize_that_makes_no_window_is_an_error(avg_map, folders, tmp_path, capsys):
    few = copy_frames(folders[1], tmp_path / "few", 4)
    out = tmp_path / "m.csv"
    assert main(["localize", "--map", str(avg_map), "--images", str(few),
                 "--out", str(out)]) == 2
    assert "4 frames make no window of 5 frames; nothing to localize" in \
        capsys.readouterr().err
    assert not out.exists()


def test_demo_window_sets_the_default_models_length(folders, tmp_path, capsys):
    """The default model concatenates frames (no weights): --window 5 is a 5-frame cat;
    a fixed-length --model with another --window is refused before any frame is read."""
    data, threads = folders[0].parent, torch.get_num_threads()
    try:
        assert main(["demo", "--data", str(data), "--window", "5", "--out",
                     str(tmp_path / "demo")]) == 0
    finally:
        torch.set_num_threads(threads)  # the demo streams single-threaded
    out = capsys.readouterr().out
    assert "window 5" in out and "start-up included" in out
    assert json.loads((tmp_path / "demo" / "report.json").read_text())["window"] == 5
    manifest = json.loads((tmp_path / "demo" / "map" / "manifest.json").read_text())
    assert manifest["model"]["config"]["aggregator"] == {"name": "cat", "length": 5}
    fc5 = tmp_path / "fc5.pt"
    SequenceModel({"encoder": "pixels", "aggregator": {"name": "fc", "length": 5}}).save(fc5)
    assert main(["demo", "--data", str(tmp_path / "none"), "--model", str(fc5), "--window",
                 "4", "--out", str(tmp_path / "demo2")]) == 2
    assert "needs windows of exactly 5 frames" in capsys.readouterr().err
