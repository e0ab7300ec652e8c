"""The command-line contract other tools rely on, run on real Nordland frames."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import copy_frames

from seqvpr_core.cli.main import SUBCOMMANDS, build_parser, main


@pytest.fixture(scope="module")
def folders(tmp_path_factory, nordland):
    root = tmp_path_factory.mktemp("nordland")
    return (copy_frames(nordland / "summer", root / "summer", 60),
            copy_frames(nordland / "winter", root / "winter", 60))


def test_help_for_the_tool_and_every_subcommand(capsys):
    parser = build_parser()
    names = [a for a in parser._subparsers._group_actions[0].choices]
    assert {"demo", "build-map", "localize", "eval", "models"} <= set(names)
    assert len(names) >= len(SUBCOMMANDS)
    for argv in [["--help"]] + [[n, "--help"] for n in names]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        assert "usage: seqvpr" in capsys.readouterr().out


def test_build_map_then_localize_writes_one_row_per_window(folders, tmp_path):
    summer, winter = folders
    assert main(["build-map", "--images", str(summer), "--model", "pixels+cat",
                 "--window", "5", "--out", str(tmp_path / "map")]) == 0
    manifest = json.loads((tmp_path / "map" / "manifest.json").read_text())
    assert manifest["count"] == 56 and manifest["model"]["name"] == "pixels+cat"
    out = tmp_path / "matches.csv"
    assert main(["localize", "--map", str(tmp_path / "map"), "--images", str(winter),
                 "--out", str(out), "--top-k", "3"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 56
    assert rows[0]["query_name"] == "images-15050.png" and rows[0]["query_index"] == "4"
    for k in (1, 2, 3):
        assert rows[0][f"match{k}_name"].startswith("images-")
        float(rows[0][f"match{k}_score"])
    correct = sum(abs(int(r["match1_index"]) - int(r["query_index"])) <= 1 for r in rows)
    assert correct / len(rows) > 0.8  # sequences of real frames localize


def test_eval_writes_recall_report_and_plot(folders, tmp_path):
    summer, winter = folders
    report_path = tmp_path / "report.json"
    assert main(["eval", "--db", str(summer), "--query", str(winter), "--model", "pixels+cat",
                 "--window", "5", "--tolerance", "1", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert set(report["recall"]) == {"current", "seq2seq"}
    for rule in ("current", "seq2seq"):
        assert set(report["recall"][rule]) == {"1", "5", "10", "20"}
        assert all(0.0 <= v <= 1.0 for v in report["recall"][rule].values())
        assert report["recall"][rule]["1"] > report["single_frame_recall"][rule]["1"]
    assert report_path.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_corrupt_image_is_a_clear_error_not_a_traceback(folders, tmp_path, capsys):
    bad = copy_frames(folders[0], tmp_path / "bad", 10)
    (bad / "images-15030.png").write_bytes(b"\x89PNG truncated")
    code = main(["build-map", "--images", str(bad), "--model", "pixels+avg", "--window", "3",
                 "--out", str(tmp_path / "map")])
    assert code == 2
    err = capsys.readouterr().err
    assert "images-15030.png" in err and "cannot decode" in err
    assert not (tmp_path / "map").exists()  # nothing half-written


def test_localize_against_a_damaged_map_says_so(folders, tmp_path, capsys):
    assert main(["build-map", "--images", str(folders[0]), "--model", "pixels+avg",
                 "--window", "3", "--out", str(tmp_path / "map")]) == 0
    (tmp_path / "map" / "index.faiss").write_bytes(b"oops")
    assert main(["localize", "--map", str(tmp_path / "map"), "--images", str(folders[1]),
                 "--out", str(tmp_path / "m.csv")]) == 2
    assert "index.faiss is damaged" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_on_the_bundled_sample(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    finally:
        torch.set_num_threads(threads)  # the demo streams single-threaded
    out = capsys.readouterr().out
    assert "single frame" in out and "sequence" in out
    assert "current R@1" in out and "seq2seq R@1" in out  # the printout names each rule
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    for rule in ("current", "seq2seq"):
        assert report["recall"][rule]["1"] > 0.9 > report["single_frame_recall"][rule]["1"]
    assert report["ground_truth"]["rules"]["seq2seq"]["max_last_frame_offset_frames"] > 1
    assert report["ground_truth"]["rules"]["current"]["max_last_frame_offset_frames"] == 1
    with open(tmp_path / "demo" / "matches.csv") as f:
        rows = list(csv.DictReader(f))
    current = sum(int(r["correct_current"]) for r in rows) / len(rows)
    assert current == pytest.approx(report["recall"]["current"]["1"])
    assert all(r["correct_seq2seq"] >= r["correct_current"] for r in rows)
    assert (tmp_path / "demo" / "recall.png").is_file()
    assert (tmp_path / "demo" / "map" / "manifest.json").is_file()


def test_models_says_whether_streaming_encodes_each_frame_once(capsys):
    assert main(["models"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line}
    column = rows["aggregator"].index("frames encoded once")
    for name in ("stformer", "adapt_stformer", "seqvlad", "seqgem"):
        assert rows[name][column:].split()[0] == "yes", rows[name]
    assert "576x768" in rows["stformer"] and "no (L=5)" in rows["stformer"]
    assert rows["stformer"].split()[-1] == "stformer"  # the fixtures that verify it
