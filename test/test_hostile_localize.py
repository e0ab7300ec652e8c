"""``seqvpr localize`` against hostile input: outputs that collide or belong to the user,
absurd options, maps that lie about themselves, stamps that go back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import copy_frames
from hostile import call, changed, refused, snapshot

from seqvpr_core.maps import PlaceMap


@pytest.fixture(scope="module")
def setup(tmp_path_factory, nordland):
    root = tmp_path_factory.mktemp("localize")
    summer = copy_frames(nordland / "summer", root / "summer", 8)
    winter = copy_frames(nordland / "winter", root / "winter", 8)
    from seqvpr_core.cli.main import main

    assert main(["build-map", "--images", str(summer), "--model", "pixels+avg", "--window",
                 "3", "--out", str(root / "map")]) == 0
    return root / "map", winter


def localize(setup, out, *extra) -> list:
    map_dir, winter = setup
    return ["localize", "--map", map_dir, "--images", winter, "--out", out, *extra]


# --- outputs ---------------------------------------------------------------------------

@pytest.mark.parametrize("extra,message", [
    (["--loops", "{out}"], "--loops {out} is the same path as --out"),
    (["--loops", "{d}/l.png", "--plot", "{d}/l.png"], "--plot {d}/l.png is the same path as "
                                                      "--loops"),
    (["--plot", "{d}/p.jpg"], "a seqvpr plot must be named .png, .pdf, .svg"),
])
def test_outputs_that_would_overwrite_each_other_are_refused_before_work(setup, tmp_path,
                                                                         capsys, extra, message):
    out = tmp_path / "m.csv"
    argv = localize(setup, out, *[e.format(out=out, d=tmp_path) for e in extra])
    refused(call(argv, capsys), message.format(out=out, d=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_the_default_plot_name_landing_on_the_matches_file_is_refused(setup, tmp_path, capsys):
    refused(call(localize(setup, tmp_path / "run.png"), capsys),
            "the plot (<out>.png)", "is the same path as --out")


def test_user_files_are_never_overwritten_and_our_own_are(setup, tmp_path, capsys):
    mine = tmp_path / "m.csv"
    mine.write_text("id,value\n1,2\n")
    (tmp_path / "m.loops.csv").write_text("")  # empty: nothing to lose
    before = snapshot(tmp_path)
    refused(call(localize(setup, mine), capsys), "m.csv exists and is not a seqvpr table")
    assert changed(before, snapshot(tmp_path)) == set()
    ours = tmp_path / "ours.csv"
    for _ in range(2):  # the second run replaces what the first wrote
        assert call(localize(setup, ours), capsys)[0] == 0
    assert ours.read_text().startswith("query_index,query_name")
    photo = tmp_path / "ours.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n not ours")
    refused(call(localize(setup, ours), capsys), "the plot (<out>.png)",
            "exists and is not a seqvpr plot")
    (tmp_path / "dir.csv").mkdir()
    refused(call(localize(setup, tmp_path / "dir.csv"), capsys),
            "dir.csv is a directory; a seqvpr table is a file")


def test_save_map_onto_user_files_or_around_the_outputs_is_refused(setup, tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("mine")
    slam = ["--mode", "slam", "--model", "pixels+avg", "--window", "3"]
    map_dir, winter = setup
    base = ["localize", "--images", winter, *slam]
    refused(call([*base, "--out", tmp_path / "m.csv", "--save-map", docs], capsys),
            "--save-map", "docs is a directory holding 1 entries")
    refused(call([*base, "--out", tmp_path / "grown" / "m.csv", "--save-map",
                  tmp_path / "grown"], capsys), "lies inside --save-map")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs"]
    assert (docs / "a.txt").read_text() == "mine"


# --- options -----------------------------------------------------------------------------

@pytest.mark.parametrize("option,value,message", [
    ("--top-k", "4000000", "argument --top-k: must be an integer in 1..1000, got 4000000"),
    ("--top-k", "0", "got 0"),
    ("--threshold", "nan", "argument --threshold: must be a finite number (or -inf: none), "
                           "got nan"),
    ("--threshold", "inf", "got inf"),
    ("--exclude-recent", "nan", "argument --exclude-recent: must be a finite number >= 0"),
    ("--exclude-recent", "-5", "got -5.0"),
    ("--consistency", "0", "argument --consistency: must be an integer >= 1, got 0"),
])
def test_absurd_numbers_are_refused(setup, tmp_path, capsys, option, value, message):
    refused(call(localize(setup, tmp_path / "m.csv", f"{option}={value}"), capsys), message)
    assert not (tmp_path / "m.csv").exists()


def test_top_k_beyond_the_map_is_capped_and_said(setup, tmp_path, capsys):
    out = tmp_path / "m.csv"
    code, stdout, err = call(localize(setup, out, "--top-k", "100"), capsys)
    assert code == 0, err
    assert "--top-k 100: the map has 6 entries; 6 matches per window" in stdout
    header = next(csv.reader(out.open()))
    assert header[-1] == "match6_score" and len(header) == 3 + 4 * 6


@pytest.mark.parametrize("argv,message", [
    (["--save-map", "{d}/g"], "--save-map needs --mode slam"),
    (["--mode", "slam", "--index", "hnsw"], "--index sets the index of a new slam map"),
])
def test_options_that_do_not_go_together(setup, tmp_path, capsys, argv, message):
    refused(call(localize(setup, tmp_path / "m.csv", *[a.format(d=tmp_path) for a in argv]),
                 capsys), message)


def test_a_json_out_is_refused_not_filled_with_csv(setup, tmp_path, capsys):
    """--out m.json would have held CSV (the format follows the suffix, only .jsonl is
    JSON lines): refused before any work, and --format still decides when given."""
    refused(call(localize(setup, tmp_path / "m.json"), capsys), "name it .csv or .jsonl")
    assert not (tmp_path / "m.json").exists()
    assert call(localize(setup, tmp_path / "m.json", "--format", "jsonl"), capsys)[0] == 0
    first = (tmp_path / "m.json").read_text().splitlines()[0]
    assert json.loads(first)["matches"]


def test_slam_without_a_map_needs_a_model(setup, tmp_path, capsys):
    _, winter = setup
    refused(call(["localize", "--mode", "slam", "--images", winter, "--out", tmp_path / "m.csv"],
                 capsys), "slam without --map needs --model")
    refused(call(["localize", "--images", winter, "--out", tmp_path / "m.csv"], capsys),
            "--map is required in localize mode")


# --- maps ----------------------------------------------------------------------------------

def _copy_map(setup, tmp_path: Path, edit=None) -> Path:
    import shutil

    dst = tmp_path / "map"
    shutil.copytree(setup[0], dst)
    if edit is not None:
        manifest = json.loads((dst / "manifest.json").read_text())
        edit(manifest)
        (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def test_a_map_without_a_window_asks_for_one_and_then_takes_it(setup, tmp_path, capsys):
    map_dir = _copy_map(setup, tmp_path, lambda m: m.update(window={}))
    _, winter = setup
    argv = ["localize", "--map", map_dir, "--images", winter, "--out", tmp_path / "m.csv"]
    refused(call(argv, capsys), "does not record its window; pass --window")
    code, _, err = call([*argv, "--window", "3"], capsys)
    assert code == 0, err
    assert len(list(csv.DictReader((tmp_path / "m.csv").open()))) == 6
    refused(call([*argv, "--window", "3", "--min-len", "4"], capsys),
            "--min-len 4 is longer than the window (3 frames)")


@pytest.mark.parametrize("make,message", [
    (lambda d: d / "none", "map directory {p} does not exist"),
    (lambda d: (d / "f").write_text("x") and d / "f", "map directory {p} is a file"),
    (lambda d: (d / "loop").symlink_to("loop") or d / "loop", "symbolic links"),
    (lambda d: (d / "docs").mkdir() or d / "docs", "manifest.json is missing: {p} is not a "
                                                   "seqvpr map"),
])
def test_maps_that_are_not_maps(setup, tmp_path, capsys, make, message):
    map_dir = make(tmp_path)
    _, winter = setup
    refused(call(["localize", "--map", map_dir, "--images", winter, "--out",
                  tmp_path / "m.csv"], capsys), message.format(p=map_dir))


def test_a_manifest_whose_metric_disagrees_with_its_index_is_refused(setup, tmp_path, capsys):
    """Scores would come out negated and the gate would close nothing."""
    map_dir = _copy_map(setup, tmp_path, lambda m: m.update(metric="l2"))
    _, winter = setup
    refused(call(["localize", "--map", map_dir, "--images", winter, "--out",
                  tmp_path / "m.csv"], capsys),
            "manifest.json says metric 'l2' but index.faiss searches by inner product")


def test_a_manifest_with_a_wrong_window_shape(setup, tmp_path, capsys):
    map_dir = _copy_map(setup, tmp_path, lambda m: m.update(window={"max_len": "3"}))
    _, winter = setup
    refused(call(["localize", "--map", map_dir, "--images", winter, "--out",
                  tmp_path / "m.csv"], capsys), "manifest.json: window: missing keys")


# --- the stream ------------------------------------------------------------------------------

def test_stamps_going_back_in_the_query_restart_the_windows_and_are_reported(setup, tmp_path,
                                                                             capsys):
    _, winter = setup
    query = copy_frames(winter, tmp_path / "q", 8)
    names = sorted(p.name for p in query.glob("*.png"))
    stamps = [0, 1, 2, 3, 0.5, 1.5, 2.5, 3.5]  # the clock restarts after four frames
    (query / "poses.csv").write_text("name,stamp,x,y\n" + "".join(
        f"{n},{s},{i},0\n" for i, (n, s) in enumerate(zip(names, stamps, strict=True))))
    code, out, err = call(["localize", "--map", setup[0], "--images", query,
                           "--out", tmp_path / "m.csv"], capsys)
    assert code == 0, err
    assert "stream: 1 time resets (stamps went back)" in out
    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert [int(r["query_index"]) for r in rows] == [2, 3, 6, 7]  # no window spans the jump
    assert len(PlaceMap.load(setup[0])) == 6  # the map is read-only here
