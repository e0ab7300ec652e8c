"""``seqvpr build-map`` against hostile input: outputs it must not replace, image folders
holding FIFOs, directories, loops and huge or unreadable images, absurd options,
damaged model files. Every refusal: exit 2, the culprit named, no traceback, nothing
touched. Cases run ``main()`` in-process unless the process is the point (see hostile.py).
"""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import copy_frames
from hostile import (
    as_other_user,
    base_env,
    call,
    changed,
    huge_png,
    no_hang,
    refused,
    run,
    shared_dir,
    snapshot,
)

from seqvpr_core.maps import PlaceMap

MODEL = ["--model", "pixels+avg", "--window", "3"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory, nordland) -> Path:
    return copy_frames(nordland / "summer", tmp_path_factory.mktemp("hostile") / "summer", 8)


def build(frames: Path, out, *extra) -> list:
    return ["build-map", "--images", frames, *MODEL, "--out", out, *extra]


# --- what --out may replace -------------------------------------------------------------

def test_out_refuses_a_folder_of_the_users_files(frames, tmp_path, capsys):
    docs = tmp_path / "my-documents"
    (docs / "photos").mkdir(parents=True)
    (docs / "cv.pdf").write_bytes(b"%PDF-1.4 mine")
    (docs / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 mine")
    before = snapshot(tmp_path)
    refused(call(build(frames, docs), capsys), "my-documents is a directory holding 2 entries",
            "not a seqvpr map")
    assert changed(before, snapshot(tmp_path)) == set()


def test_out_refuses_the_working_directory(frames, tmp_path, capsys, monkeypatch):
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    refused(call(build(frames, "."), capsys), "--out . is the working directory")
    assert changed(before, snapshot(tmp_path)) == set()


def test_out_refuses_a_file_and_a_path_through_a_file(frames, tmp_path, capsys):
    csv = tmp_path / "some-file.csv"
    csv.write_text("id,value\n1,2\n")
    before = snapshot(tmp_path)
    refused(call(build(frames, csv), capsys), "some-file.csv is a file; a seqvpr map is a "
                                              "directory")
    refused(call(build(frames, csv / "map"), capsys), f"{csv} is a file, not a directory")
    assert changed(before, snapshot(tmp_path)) == set()


def test_out_takes_an_empty_folder_and_replaces_its_own_map_with_the_users_umask(
        frames, tmp_path, capsys):
    (tmp_path / "maps" / "route").mkdir(parents=True)
    old = os.umask(0o022)
    try:
        assert call(build(frames, tmp_path / "maps" / "route"), capsys)[0] == 0
        assert call(build(frames, tmp_path / "maps" / "route", "--stride", "2"), capsys)[0] == 0
    finally:
        os.umask(old)
    route = tmp_path / "maps" / "route"
    assert len(PlaceMap.load(route)) == 3  # the second map replaced the first
    assert stat.S_IMODE(route.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in route.iterdir()} == {0o644}
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["route"]


def test_out_is_claimed_before_any_work(frames, tmp_path, capsys):
    """A refused --out costs nothing: the model is never loaded (a missing checkpoint
    would be the error otherwise)."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    err = refused(call(["build-map", "--images", frames, "--model", tmp_path / "none.pt",
                        "--window", "3", "--out", tmp_path / "docs"], capsys), "docs")
    assert "none.pt" not in err


# --- image folders ----------------------------------------------------------------------

def test_a_fifo_in_the_image_folder_is_skipped_not_read(frames, tmp_path):
    """Reading a FIFO blocks forever: the real command must finish, saying it skipped it."""
    folder = copy_frames(frames, tmp_path / "imgs", 6)
    os.mkfifo(folder / "images-99999.png")
    done = run(build(folder, tmp_path / "map"))  # (a hang fails at the timeout)
    assert done.returncode == 0, done.stderr
    assert "skipped 1 entries named like images" in done.stderr
    assert "images-99999.png (a named pipe (FIFO))" in done.stderr
    assert len(PlaceMap.load(tmp_path / "map")) == 4


def test_directories_loops_and_broken_links_named_like_images_are_skipped(frames, tmp_path,
                                                                          capsys, caplog):
    folder = copy_frames(frames, tmp_path / "imgs", 6)
    (folder / "album.png").mkdir()
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "gone.jpg").symlink_to("nowhere.jpg")
    code, out, err = call(build(folder, tmp_path / "map"), capsys)
    assert code == 0, err
    said = caplog.text  # (in-process: the CLI's log handler writes to an older stderr)
    assert "skipped 3 entries" in said and "album.png (a directory)" in said
    assert "symbolic links" in said and "No such file" in said
    assert len(PlaceMap.load(tmp_path / "map")) == 4


def test_file_names_that_are_not_utf8_round_trip(frames, tmp_path, capsys):
    """Linux allows any bytes in a name: the map and the matches keep them."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, p in enumerate(sorted(frames.iterdir())[:5]):
        (folder / os.fsdecode(b"\xff%d.png" % i)).write_bytes(p.read_bytes())
    assert call(build(folder, tmp_path / "map"), capsys)[0] == 0
    assert PlaceMap.load(tmp_path / "map").keyframes[0].name == os.fsdecode(b"\xff2.png")
    code, _, err = call(["localize", "--map", tmp_path / "map", "--images", folder, "--out",
                         tmp_path / "m.csv"], capsys)
    assert code == 0, err
    assert b"\xff2.png" in (tmp_path / "m.csv").read_bytes()


@pytest.mark.parametrize("make,message", [
    (lambda p: None, "image folder {p} does not exist"),
    (lambda p: p.write_text("x"), "image folder {p} is a file, not a directory"),
    (lambda p: p.symlink_to(p.name), "cannot open image folder {p}: Too many levels of "
                                     "symbolic links"),
    (lambda p: p.mkdir(), "no images (.png"),
])
def test_image_folders_that_are_not_folders_of_images(tmp_path, capsys, make, message):
    folder = tmp_path / "imgs"
    make(folder)
    refused(call(build(folder, tmp_path / "map"), capsys), message.format(p=folder))
    assert not (tmp_path / "map").exists()


def test_an_image_over_the_pixel_budget_is_refused_from_its_header(tmp_path):
    from seqvpr_core.data import read_image

    with pytest.raises(ValueError, match=r"is 9000x8000 pixels \(72 MP\), more than seqvpr "
                                         r"decodes \(67 MP\)"):
        read_image(huge_png(tmp_path / "big.png", 9000, 8000))


def test_other_formats_are_sized_from_their_header_too(tmp_path):
    """A BMP header claiming 20000x20000 (no pixels behind it): Pillow reads the size."""
    from seqvpr_core.data import read_image

    header = struct.pack("<2sIHHIIiiHHIIiiII", b"BM", 54, 0, 0, 54, 40, 20000, 20000, 1, 24,
                         0, 0, 2835, 2835, 0, 0)
    (tmp_path / "big.bmp").write_bytes(header)
    with pytest.raises(ValueError, match="big.bmp is 400 MP, more than seqvpr decodes"):
        read_image(tmp_path / "big.bmp")


def test_a_huge_png_is_refused_from_its_header_without_decoding_it(frames, tmp_path):
    """A valid 20000x20000 PNG would cost 3 GB decoded: the real command refuses it
    naming the file, and its memory stays that of an ordinary run."""
    folder = copy_frames(frames, tmp_path / "imgs", 4)
    huge_png(folder / "images-99999.png")
    # VmHWM, this process's own peak: ru_maxrss also counts the parent's peak (pytest's,
    # whatever the tests before it loaded), which Linux carries across the fork and exec
    probe = ("import re, runpy, sys\n"
             "sys.argv[0] = 'seqvpr'\n"
             "try:\n    runpy.run_module('seqvpr_core.cli.main', run_name='__main__')\n"
             "finally:\n    status = open('/proc/self/status').read()\n"
             "    print('maxrss_kb', re.search(r'VmHWM:\\s+(\\d+)', status).group(1), "
             "file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe, *map(str, build(folder, tmp_path / "m"))],
                          capture_output=True, text=True, timeout=600, env=base_env())
    refused(done, "images-99999.png is 20000x20000 pixels (400 MP), more than seqvpr decodes "
                  "(67 MP)")
    rss_mb = int(done.stderr.split("maxrss_kb")[1].split()[0]) / 1024
    assert rss_mb < 1500, f"peak memory {rss_mb:.0f} MB"


AS_USER = """
import sys
from seqvpr_core.cli.main import main
for argv in sys.argv[1:]:
    print("exit", main(argv.split("|")), file=sys.stderr, flush=True)
"""


def test_an_unreadable_image_folder_and_output_as_another_user(frames):
    """Permission denied, as a user meets it (root reads anything, so as nobody): one
    process runs the three commands, each must refuse with its own line."""
    prefix = as_other_user()
    with shared_dir() as shared:
        folder = copy_frames(frames, shared / "imgs", 5)
        (folder / "images-15030.png").chmod(0)
        hidden = copy_frames(frames, shared / "hidden", 4)
        hidden.chmod(0o311)  # enterable, not listable
        (shared / "locked").mkdir(mode=0o555)
        cases = [build(folder, shared / "map"), build(hidden, shared / "map2"),
                 build(copy_frames(frames, shared / "ok", 4), shared / "locked" / "map")]
        done = subprocess.run(
            [*prefix, sys.executable, "-c", AS_USER, *("|".join(map(str, c)) for c in cases)],
            capture_output=True, text=True, timeout=600,
            env={**base_env(), "HOME": str(shared), "MPLCONFIGDIR": str(shared / "mpl")})
    err = done.stderr
    assert "Traceback" not in err and err.count("exit 2") == 3, err
    assert "cannot read image" in err and "images-15030.png: Permission denied" in err
    assert f"cannot list image folder {hidden}: permission denied" in err
    assert f"permission denied: cannot write in {shared / 'locked'}" in err


@pytest.mark.parametrize("rows,message", [
    ("name,stamp,x\n", "poses.csv lacks columns ['y']"),
    ("name,stamp,x,y\n{n},0,abc,0\n", "poses.csv:2: x of {n} must be a number, got 'abc'"),
    ("name,stamp,x,y\n{n},0,nan,0\n", "poses.csv:2: x of {n} must be finite, got 'nan'"),
    ("name,stamp,x,y\n{n},inf,0,0\n", "stamp of {n} must be finite"),
    ("name,stamp,x,y\n{n},0,0,0\x00\n", "poses.csv:2: y of {n} must be a number, got '0\\x00'"),
    ("name,stamp,x,y\n", "has no row for 3 image(s)"),
])
def test_crafted_poses_csv_is_refused_naming_line_and_column(frames, tmp_path, capsys, rows,
                                                             message):
    folder = copy_frames(frames, tmp_path / "imgs", 3)
    first = sorted(folder.iterdir())[0].name
    others = "".join(f"{p.name},{i},0,0\n" for i, p in enumerate(sorted(folder.iterdir())[1:], 1))
    text = rows.format(n=first) + (others if rows.count("\n") > 1 else "")
    (folder / "poses.csv").write_text(text)
    refused(call(build(folder, tmp_path / "map"), capsys), message.format(n=first))


def test_poses_csv_that_is_not_text_or_not_a_file(frames, tmp_path, capsys):
    folder = copy_frames(frames, tmp_path / "imgs", 3)
    (folder / "poses.csv").write_bytes(b"\xff\xfe\x00n\x00a")
    refused(call(build(folder, tmp_path / "map"), capsys), "poses.csv is not UTF-8 text")
    (folder / "poses.csv").unlink()
    os.mkfifo(folder / "poses.csv")
    with no_hang():
        refused(call(build(folder, tmp_path / "map"), capsys), "poses.csv is a named pipe")


# --- options ----------------------------------------------------------------------------

@pytest.mark.parametrize("option,value,message", [
    ("--threads", "0", "argument --threads: must be an integer in 1..1024, got 0"),
    ("--threads", "-1", "got -1"),
    ("--window", "0", "argument --window: must be an integer in 1..1000, got 0"),
    ("--window", "100000", "got 100000"),
    ("--window", "3.5", "got '3.5'"),
    ("--stride", "0", "argument --stride: must be an integer >= 1, got 0"),
    ("--min-len", "-2", "argument --min-len: must be an integer in 1..1000"),
    ("--batch-size", "0", "argument --batch-size: must be an integer in 1..4096, got 0"),
    ("--pca", "0", "argument --pca: must be an integer >= 1, got 0"),
    ("--min-distance", "nan", "argument --min-distance: must be a finite number >= 0, got nan"),
    ("--min-distance", "-1", "got -1.0"),
    ("--min-interval", "inf", "argument --min-interval: must be a finite number >= 0, got inf"),
])
def test_absurd_numbers_are_refused_where_they_enter(frames, tmp_path, capsys, option, value,
                                                     message):
    argv = build(frames, tmp_path / "map")
    argv = [option, value, *argv] if option == "--threads" else [*argv, option, value]
    refused(call(argv, capsys), message)
    assert not (tmp_path / "map").exists()


def test_min_len_longer_than_the_window_and_too_few_frames(frames, tmp_path, capsys):
    refused(call(build(frames, tmp_path / "m", "--min-len", "5"), capsys),
            "--min-len 5 is longer than the window (3 frames)")
    folder = copy_frames(frames, tmp_path / "two", 2)
    refused(call(build(folder, tmp_path / "m"), capsys), "2 frames make no window of 3 frames")


def test_options_that_do_not_go_together_exit_2_from_the_real_command(frames, tmp_path):
    """These leave through an exception, not argparse: still exit 2, one line."""
    done = run(build(frames, tmp_path / "map", "--topic", "/camera"))
    assert refused(done, "apply to --bag only").count("\n") == 1


def test_debug_shows_the_traceback_nothing_else_does(frames, tmp_path, capsys):
    argv = build(tmp_path / "missing", tmp_path / "map")
    assert "Traceback" not in refused(call(argv, capsys), "does not exist")
    with pytest.raises(FileNotFoundError):
        call(["--debug", *argv], capsys)


# --- model files --------------------------------------------------------------------------

def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _checkpoint(tmp_path: Path) -> Path:
    from seqvpr_core.models import build_model

    path = tmp_path / "model.pt"
    build_model("pixels+avg").save(path)
    return path


@pytest.mark.parametrize("make,message", [
    (lambda d: d / "none.pt", "model checkpoint {p} does not exist"),
    (lambda d: (d / "t.pt").write_bytes(_checkpoint(d).read_bytes()[:300]) and d / "t.pt",
     "model checkpoint {p} cannot be read"),
    (lambda d: torch.save({"w": torch.zeros(2)}, d / "f.pt") or d / "f.pt",
     "{p} is not a seqvpr model checkpoint"),
    (lambda d: torch.save({"format": "seqvpr-model", "version": 1}, d / "k.pt") or d / "k.pt",
     "missing keys ['config', 'state_dict']"),
    (lambda d: torch.save({"format": "seqvpr-model", "version": 1, "config": {"encoder": "x"},
                           "state_dict": {}}, d / "c.pt") or d / "c.pt",
     "its model config cannot be built"),
    (lambda d: torch.save({"format": "seqvpr-model", "version": 1,
                           "config": {"encoder": "pixels", "aggregator": "avg"},
                           "state_dict": {"nope": torch.zeros(1)}}, d / "s.pt") or d / "s.pt",
     "its weights do not fit its config"),
    (lambda d: (d / "dir.pt").mkdir() or d / "dir.pt", "model checkpoint {p} is a directory"),
    (lambda d: os.mkfifo(d / "fifo.pt") or d / "fifo.pt", "is a named pipe (FIFO)"),
    (lambda d: _write(d / "m.yaml", "- a\n- b\n"), "model config {p} must be a mapping"),
    (lambda d: _write(d / "m.yaml", "encoder: [unclosed\n"), "model config {p} is not valid YAML"),
    (lambda d: _write(d / "m.json", '{"encoder": '), "model config {p} is not valid JSON"),
    (lambda d: _write(d / "m.yaml", "encoder: pixels\naggregator: avg\nextra: 1\n"),
     "unknown model config keys ['extra']"),
    (lambda d: _write(d / "m.yaml", "encoder: pixels\naggregator: {name: avg, k: 3}\n"),
     "aggregator 'avg': avg() got an unexpected keyword argument 'k'"),
    (lambda d: "pixels+nope", "unknown aggregator 'nope'"),
    (lambda d: "pixels", "is not a checkpoint, a config file or 'encoder+aggregator'"),
])
def test_damaged_and_foreign_model_files_are_refused(frames, tmp_path, capsys, make, message):
    spec = make(tmp_path)
    argv = ["build-map", "--images", frames, "--model", spec, "--window", "3",
            "--out", tmp_path / "map"]
    refused(call(argv, capsys), message.format(p=spec))
    assert not (tmp_path / "map").exists()


@pytest.mark.parametrize("raised,code,message", [
    (KeyboardInterrupt(), 130, "seqvpr build-map: interrupted"),
    (MemoryError(), 2, "seqvpr build-map: error: out of memory (a smaller --batch-size"),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB"),
     2, "error: out of memory: DefaultCPUAllocator"),
    (OSError(28, "No space left on device", "/data/x"), 2, "error: /data/x: No space left"),
    (TypeError("unsupported operand"), 1, "internal error: TypeError: unsupported operand (a "
                                          "bug in seqvpr; rerun with --debug"),
])
def test_what_leaves_a_command_is_one_line_with_its_exit_code(frames, tmp_path, capsys,
                                                             monkeypatch, raised, code, message):
    from seqvpr_core.cli import build_map

    def fail(args):
        raise raised
    monkeypatch.setattr(build_map, "run", fail)
    got, _, err = call(build(frames, tmp_path / "map"), capsys)
    assert got == code and message in err and "Traceback" not in err
