"""Map directories under attack: what save may replace, a save killed at any instant,
the user's umask, and manifests / keyframes / indexes crafted to mislead the loader."""

from __future__ import annotations

import json
import math
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hostile import REPO, base_env, changed, cli_line, no_hang, snapshot, tmpfs_script

from seqvpr_core.maps import Keyframe, MapFormatError, PlaceMap
from seqvpr_core.outputs import OutputError


def make_map(n: int = 12, dim: int = 8, seed: int = 0, metric: str = "ip") -> PlaceMap:
    rng = np.random.default_rng(seed)
    xb = rng.standard_normal((n, dim)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    m = PlaceMap(dim, metric, model={"name": "test", "fingerprint": "abc"},
                 window={"min_len": 2, "max_len": 2, "stride": 1})
    m.add(xb, [Keyframe(i * 10, i * 10 + 5, 2, i, i + 1, f"f{i}.png", float(i), 0.0,
                        math.nan, "run") for i in range(n)])
    return m


# --- what save may replace ------------------------------------------------------------

def test_save_refuses_a_folder_of_someone_elses_files_and_leaves_it_alone(tmp_path):
    docs = tmp_path / "my-documents"
    (docs / "thesis").mkdir(parents=True)
    (docs / "notes.txt").write_text("years of work")
    (docs / "thesis" / "ch1.tex").write_text("\\chapter{1}")
    before = snapshot(tmp_path)
    with pytest.raises(OutputError, match=r"my-documents is a directory holding 2 entries "
                                          r"\(e\.g\. 'notes\.txt'\) and is not a seqvpr map"):
        make_map().save(docs)
    assert changed(before, snapshot(tmp_path)) == set()


def test_save_refuses_a_file_and_the_working_directory(tmp_path, monkeypatch):
    csv = tmp_path / "some-file.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(OutputError, match="is a file; a seqvpr map is a directory"):
        make_map().save(csv)
    assert csv.read_text() == "a,b\n1,2\n"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(OutputError, match="is the working directory"):
        make_map().save(".")
    make_map().save(work / "map")  # a map of its own inside it is fine
    with pytest.raises(OutputError, match="is the working directory or holds it"):
        make_map().save(tmp_path)


def test_save_takes_an_empty_directory_and_replaces_a_map_whole(tmp_path):
    (tmp_path / "empty").mkdir()
    make_map(n=5).save(tmp_path / "empty")
    assert len(PlaceMap.load(tmp_path / "empty")) == 5
    make_map(n=7).save(tmp_path / "empty")  # now a map: replaced
    assert len(PlaceMap.load(tmp_path / "empty")) == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no debris


def test_save_follows_a_symlink_to_a_map_and_refuses_a_symlink_loop(tmp_path):
    make_map(n=5).save(tmp_path / "route-v1")
    (tmp_path / "current").symlink_to("route-v1")
    make_map(n=6).save(tmp_path / "current")
    assert (tmp_path / "current").is_symlink()
    assert len(PlaceMap.load(tmp_path / "route-v1")) == 6
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(OutputError, match="loop"):
        make_map().save(tmp_path / "loop")


def test_files_and_folders_get_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        make_map().save(tmp_path / "maps" / "route")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "maps") == 0o755
    assert mode(tmp_path / "maps" / "route") == 0o755  # tempfile.mkdtemp would give 0700
    for name in ("manifest.json", "index.faiss", "keyframes.csv"):
        assert mode(tmp_path / "maps" / "route" / name) == 0o644


# --- a save killed at the worst instant -----------------------------------------------

KILLER = textwrap.dedent("""
    import math, os, signal, sys
    import numpy as np
    sys.path.insert(0, {test_dir!r})
    from test_hostile_maps import make_map
    target, when = sys.argv[1], sys.argv[2]
    real = os.replace
    def replace(src, dst):
        # 'between': the old map is aside, the new one not yet in place
        moving_new = ".tmp-" in os.path.basename(str(src))
        if (when == "between" and moving_new) or (when == "before" and not moving_new):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst)
    os.replace = replace
    make_map(n=30, seed=1).save(target)
""")


def _killed_between(tmp_path: Path) -> Path:
    """A map whose replace was cut between its renames: only .map.old-* is left."""
    target = tmp_path / "map"
    make_map(n=12).save(target)
    old = tmp_path / ".map.old-999999-0123abcd"  # a writer that is gone
    os.replace(target, old)
    return target


def test_a_recovered_map_is_read_in_place_where_it_cannot_be_moved_back(tmp_path, monkeypatch,
                                                                     caplog):
    target = _killed_between(tmp_path)

    def read_only(src, dst):
        raise OSError(30, "Read-only file system")
    monkeypatch.setattr(os, "rename", read_only)
    assert len(PlaceMap.load(target)) == 12
    assert not target.exists() and "reading the previous version in place" in caplog.text


def test_a_replace_in_progress_is_not_disturbed(tmp_path):
    """The writer still runs (here: this process): load reads the old copy, moves nothing."""
    target = _killed_between(tmp_path)
    live = tmp_path / f".map.old-{os.getpid()}-0123abcd"
    os.replace(tmp_path / ".map.old-999999-0123abcd", live)
    assert len(PlaceMap.load(target)) == 12
    assert live.is_dir() and not target.exists()


@pytest.mark.parametrize("when", ["between", "before"])
def test_a_save_killed_at_any_instant_leaves_a_map_the_next_load_finds(tmp_path, when):
    """kill -9 of a real process inside PlaceMap.save, at its most fragile instants."""
    target = tmp_path / "map"
    make_map(n=12).save(target)
    script = KILLER.format(test_dir=str(Path(__file__).parent))
    done = subprocess.run([sys.executable, "-c", script, str(target), when],
                          env=base_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr
    left = sorted(p.name for p in tmp_path.iterdir())
    if when == "between":
        assert "map" not in left and any(n.startswith(".map.old-") for n in left), left
    else:
        assert "map" in left and any(n.startswith(".map.tmp-") for n in left), left
    recovered = PlaceMap.load(target)  # the previous map, whole
    assert len(recovered) == 12
    assert target.is_dir()
    make_map(n=3).save(target)  # the next save clears what the killed one left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map"]


def test_writes_on_a_full_disk_keep_the_previous_version_and_leave_no_debris(tmp_path):
    """A real tmpfs too small for the new map (and then a new table): each write fails
    with a message naming its target and the cause; the old versions are untouched, no
    temporary is left."""
    disk = tmp_path / "disk"
    result = tmp_path / "result.txt"
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_hostile_maps import make_map
        from seqvpr_core.maps import PlaceMap
        make_map(n=5).save({str(disk / 'map')!r})
        try:
            make_map(n=20000, dim=64).save({str(disk / 'map')!r})  # 5 MB
        except Exception as exc:
            print(type(exc).__name__, exc)
        from seqvpr_core.cli.localize_output import write_csv
        write_csv({str(disk / 't.csv')!r}, ["query_index", "query_name"], [[1, "a"]])
        try:
            write_csv({str(disk / 't.csv')!r}, ["query_index", "query_name"],
                      [[i, "x" * 100] for i in range(20000)])  # 2 MB
        except Exception as exc:
            print(type(exc).__name__, exc)
        import os
        print(sorted(os.listdir({str(disk)!r})), len(PlaceMap.load({str(disk / 'map')!r})),
              open({str(disk / 't.csv')!r}).read().splitlines())
    """))
    done = tmpfs_script(f"{sys.executable} {script} > {result} 2>&1", disk, "1m")
    text = result.read_text() if result.exists() else done.stderr
    assert text.count("No space left on device") == 2, text
    assert f"OutputError cannot write {disk / 'map'}" in text, text
    assert f"OutputError cannot write {disk / 't.csv'}" in text, text
    assert "['map', 't.csv'] 5 ['query_index,query_name', '1,a']" in text, text


def test_build_map_onto_a_read_only_disk_is_refused_before_any_work(tmp_path, summer_few):
    disk = tmp_path / "ro"
    out = tmp_path / "out.txt"
    cmd = cli_line(["build-map", "--images", summer_few, "--model", "pixels+avg",
                    "--window", "3", "--out", disk / "map"])
    done = tmpfs_script(f"mount -o remount,ro '{disk}' && {cmd} > {out} 2>&1; "
                        f"echo exit=$? >> {out}", disk, "1m")
    text = out.read_text() if out.exists() else done.stderr
    assert "read-only file system" in text and "exit=2" in text and "Traceback" not in text


@pytest.fixture
def summer_few(tmp_path, nordland):
    from conftest import copy_frames

    return copy_frames(nordland / "summer", tmp_path / "summer", 8)


# --- crafted map files ----------------------------------------------------------------

def _crafted(tmp_path: Path, edit) -> Path:
    root = tmp_path / "map"
    make_map().save(root)
    manifest = json.loads((root / "manifest.json").read_text())
    new = edit(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest if new is None else new))
    return root


MANIFEST_CASES = {
    "a list": (lambda m: [m], "not a seqvpr map manifest"),
    "unknown key": (lambda m: m.update(windwo={}), "unknown keys ['windwo']"),
    "dim as text": (lambda m: m.update(descriptor_dim="8"),
                    "descriptor_dim must be an integer, got a string ('8')"),
    "dim zero": (lambda m: m.update(descriptor_dim=0), "descriptor_dim must be an integer >= 1"),
    "negative count": (lambda m: m.update(count=-1), "count must be an integer >= 0"),
    "unknown metric": (lambda m: m.update(metric="cosine"), "metric must be one of"),
    "metric disagrees with the index": (lambda m: m.update(metric="l2"),
                                        "says metric 'l2' but index.faiss searches by inner"),
    "files as a list": (lambda m: m.update(files=[]), "files must be a mapping"),
    "path escape": (lambda m: m["files"].update({"../../etc/passwd": "0" * 64}),
                    "is not a file name inside the map"),
    "bad digest": (lambda m: m["files"].update({"index.faiss": "abc"}),
                   "must have a sha256 hex digest"),
    "model as text": (lambda m: m.update(model="pixels+cat"), "model must be a mapping"),
    "window zero": (lambda m: m.update(window={"min_len": 0, "max_len": 2, "stride": 1}),
                    "window.min_len must be an integer in 1..1000, got 0"),
    "window backwards": (lambda m: m.update(window={"min_len": 3, "max_len": 2, "stride": 1}),
                         "window.min_len 3 > window.max_len 2"),
    "window keys": (lambda m: m.update(window={"length": 2}), "unknown keys ['length']"),
    "version": (lambda m: m.update(version=99), "format version 99"),
    "count disagrees": (lambda m: m.update(count=13), "inconsistent"),
    "missing files key": (lambda m: m.pop("files") and None, "missing keys ['files']"),
    "NaN dim": (lambda m: m.update(descriptor_dim=float("nan")), "descriptor_dim must be"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_crafted_manifests_are_refused_naming_the_file_and_the_field(tmp_path, case):
    edit, message = MANIFEST_CASES[case]
    root = _crafted(tmp_path, edit)
    with pytest.raises(MapFormatError, match=None) as exc:
        PlaceMap.load(root)
    assert message in str(exc.value)
    assert "manifest.json" in str(exc.value) or "map" in str(exc.value)


def _rewrite_keyframes(root: Path, edit) -> None:
    import hashlib

    path = root / "keyframes.csv"
    lines = path.read_text().splitlines()
    lines = edit(lines)
    path.write_text("\n".join(lines) + "\n")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"]["keyframes.csv"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("edit,message", [
    (lambda rows: rows[:2] + ["1,10,15,2,1,2,f1.png,inf,0.0,,run"] + rows[3:],
     "keyframes.csv:3: keyframe 'f1.png' has an infinite pose"),
    (lambda rows: rows[:2] + ["1,100,50,2,1,2,f1.png,1.0,0.0,,run"] + rows[3:],
     "keyframes.csv:3: keyframe 'f1.png' ends at 50 ns, before its start 100 ns"),
    (lambda rows: rows[:2] + ["1,x,15,2,1,2,f1.png,,,,run"] + rows[3:],
     "keyframes.csv:3: invalid literal for int()"),
    (lambda rows: rows[:1] + ["0," + "x" * 200_000] + rows[2:], "cannot read map"),
    (lambda rows: ["id,when"] + rows[1:], "keyframes.csv: header"),
])
def test_crafted_keyframes_are_refused_naming_the_line(tmp_path, edit, message):
    root = tmp_path / "map"
    make_map().save(root)
    _rewrite_keyframes(root, edit)
    with pytest.raises(MapFormatError) as exc:
        PlaceMap.load(root)
    assert message in str(exc.value)


@pytest.mark.parametrize("make,message", [
    (lambda p: (p.unlink(), p.mkdir()), "is a directory, not a file"),
    (lambda p: (p.unlink(), os.mkfifo(p)), "is a named pipe (FIFO), not a regular file"),
    (lambda p: (p.unlink(), p.symlink_to(p.name)), "symbolic link"),
])
def test_map_files_that_are_not_files_are_refused_without_hanging(tmp_path, make, message):
    for name in ("manifest.json", "index.faiss", "keyframes.csv"):
        root = tmp_path / name
        make_map().save(root)
        make(root / name)
        with no_hang(), pytest.raises(MapFormatError) as exc:
            PlaceMap.load(root)
        assert message in str(exc.value) and name in str(exc.value)


def test_a_map_directory_that_is_a_file_or_a_loop_says_so(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(MapFormatError, match="is a file, not a directory"):
        PlaceMap.load(tmp_path / "f")
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(MapFormatError, match="symbolic links"):
        PlaceMap.load(tmp_path / "loop")
