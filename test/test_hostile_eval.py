"""``seqvpr eval`` against hostile input: negative tolerances reported as recalls, NaN
radii, reports and plots landing on each other or on the user's files, bad dataset
configs."""

from __future__ import annotations

import json

import pytest
from conftest import copy_frames
from hostile import call, changed, refused, snapshot


@pytest.fixture(scope="module")
def pair(tmp_path_factory, nordland):
    root = tmp_path_factory.mktemp("eval")
    return (copy_frames(nordland / "summer", root / "summer", 8),
            copy_frames(nordland / "winter", root / "winter", 8))


def evaluate(pair, json_path, *extra, gt=("--tolerance", "1")) -> list:
    db, query = pair
    return ["eval", "--db", db, "--query", query, "--model", "pixels+avg", "--window", "3",
            *gt, "--json", json_path, "--examples", "0", *extra]


@pytest.mark.parametrize("gt,extra,message", [
    (["--tolerance=-1"], [], "argument --tolerance: must be an integer >= 0, got -1"),
    (["--tolerance", "0.5"], [], "got '0.5'"),
    (["--radius", "nan"], [], "argument --radius: must be a finite number >= 0, got nan"),
    (["--radius=-3"], [], "got -3.0"),
    (["--radius", "5"], ["--max-heading", "200"],
     "argument --max-heading: must be a finite number in 0..180, got 200.0"),
    (["--tolerance", "1"], ["--sweep", "3,a"],
     "argument --sweep: must be an integer in 1..1000, got 'a'"),
    (["--tolerance", "1"], ["--sweep", "0"], "got 0"),
    (["--tolerance", "1"], ["--sweep", ","], "give comma-separated values"),
    (["--tolerance", "1"], ["--examples=-1"], "argument --examples: must be an integer in "
                                              "0..100, got -1"),
])
def test_absurd_numbers_are_refused_not_reported_as_recalls(pair, tmp_path, capsys, gt, extra,
                                                            message):
    refused(call(evaluate(pair, tmp_path / "r.json", *extra, gt=gt), capsys), message)
    assert list(tmp_path.iterdir()) == []


def test_report_and_plots_never_overwrite_each_other_or_the_users_files(pair, tmp_path, capsys):
    refused(call(evaluate(pair, tmp_path / "r.png"), capsys),
            "the recall plot (<json>.png)", "is the same path as --json")
    refused(call(evaluate(pair, tmp_path / "r.json", "--plot", tmp_path / "r_pr.png"), capsys),
            "the PR plot (<json>_pr.png)", "is the same path as --plot")
    mine = tmp_path / "results.json"
    mine.write_text(json.dumps({"model": "netvlad", "recall": {"1": 0.9}}))  # another tool's
    (tmp_path / "r2.png").write_bytes(b"\x89PNG\r\n\x1a\nmy own figure")
    before = snapshot(tmp_path)
    refused(call(evaluate(pair, mine), capsys), "results.json exists and is not a seqvpr report")
    refused(call(evaluate(pair, tmp_path / "r2.json"), capsys), "r2.png exists and is not a "
                                                                "seqvpr plot")
    assert changed(before, snapshot(tmp_path)) == set()


def test_a_report_seqvpr_wrote_is_replaced(pair, tmp_path, capsys):
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"seqvpr_version": "0.0.1", "recall": {}}))
    code, _, err = call(evaluate(pair, report), capsys)
    assert code == 0, err
    written = json.loads(report.read_text())
    assert written["seqvpr_version"] != "0.0.1"
    assert set(written["recall"]["current"]) == {"1", "5", "10", "20"}
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("text,message", [
    ("model: [unclosed\n", "training config {p} is not valid YAML"),
    ("- 1\n- 2\n", "{p}: config must be a mapping"),
    ("", "{p}: the config lacks keys ['model', 'data', 'output']"),
])
def test_bad_data_configs_are_refused_naming_the_file(pair, tmp_path, capsys, text, message):
    cfg = tmp_path / "data.yaml"
    cfg.write_text(text)
    refused(call(["eval", "--data", cfg, "--model", "pixels+avg", "--window", "3",
                  "--tolerance", "1", "--json", tmp_path / "r.json"], capsys),
            message.format(p=cfg))


def test_data_and_folders_together_and_missing_folders(pair, tmp_path, capsys):
    db, query = pair
    refused(call(["eval", "--data", tmp_path / "c.yaml", "--db", db, "--model", "pixels+avg",
                  "--window", "3", "--tolerance", "1", "--json", tmp_path / "r.json"], capsys),
            "give either --data or --db/--query, not both")
    refused(call(evaluate((db, tmp_path / "nowhere"), tmp_path / "r.json"), capsys),
            f"image folder {tmp_path / 'nowhere'} does not exist")
