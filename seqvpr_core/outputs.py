"""What a seqvpr command may write over, decided before any work starts.

The rule, for every command (and every library writer, which checks again):

- a path that does not exist is created, missing parent directories too, with the
  modes the user's umask gives (never the 0700/0600 of ``tempfile``);
- an existing path is replaced only when it is **empty** (an empty file or directory:
  nothing is lost) or when **seqvpr wrote it**, recognised by its content as the same
  kind of output: a map directory by its ``manifest.json`` (``"format": "seqvpr-map"``),
  a table by its header (``query_index,query_name,...``), a JSON report by its
  ``seqvpr_version`` key, a plot by the ``seqvpr`` mark in its metadata, a checkpoint
  by its format tag, a training folder by holding nothing but those;
- anything else (a folder of the user's files, a file seqvpr did not write, a FIFO,
  the working directory) is refused with an :class:`OutputError` that names the path,
  what it holds and what may be replaced there;
- symbolic links are followed, as a shell redirection follows them: the file a link
  points to is the output.

How a command uses it: claim
every output through one :class:`OutputPlan` first, which also refuses two outputs on
one path, then work, then write with :mod:`seqvpr_core.atomic`::

    plan = OutputPlan()
    out = plan.claim(args.out, TABLE, "--out")
    loops = plan.claim(loops_path, TABLE, "--loops")  # refused if it is --out's file
    maps = plan.claim(args.save_map, MAP, "--save-map")
    ...                                               # the work
    write_csv(out, header, rows)                      # atomic, checks TABLE again

A new kind of output is an :class:`OutputKind` with a recogniser (``path -> bool``:
"seqvpr wrote this") and a hint saying how, e.g.
``OutputKind("a converted bag", False, _is_converted, "a seqvpr-bag tag in its metadata")``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .inputs import describe_os_error, file_kind

MAP_FORMAT = "seqvpr-map"  # the manifest's format tag (maps.place_map writes it)
PLOT_SUFFIXES = (".png", ".pdf", ".svg")
_HEAD = 1 << 16  # bytes read to recognise a file: enough for any header seqvpr writes


class OutputError(ValueError):
    """An output path seqvpr must not write over, or cannot write."""


@dataclass(frozen=True)
class OutputKind:
    """What a command writes: its name in messages, whether it is a directory, and the
    recogniser that says whether an existing path holds one that seqvpr wrote.
    ``in_place``: a directory written into (a training folder), not replaced whole."""

    name: str
    directory: bool
    recognise: Callable[[Path], bool]
    hint: str  # how seqvpr's own output of this kind is recognised, for messages
    in_place: bool = False
    suffixes: tuple[str, ...] = ()  # allowed file suffixes; empty: any


def _head(path: Path, n: int = _HEAD) -> bytes:
    with path.open("rb") as f:
        return f.read(n)


def _tail(path: Path, n: int = _HEAD) -> bytes:
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - n))
        return f.read()


def _json(path: Path, max_bytes: int = 64 << 20):
    if not path.is_file() or path.stat().st_size > max_bytes:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None


def _is_map(path: Path) -> bool:
    manifest = _json(path / "manifest.json", 16 << 20)
    return isinstance(manifest, dict) and manifest.get("format") == MAP_FORMAT


# every per-window table seqvpr writes starts with these columns (CSV) or this key (JSON
# lines: the records are dicts whose first key is query_index)
TABLE_STARTS = (b"query_index,query_name", b'{"query_index": ')


def _is_table(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            first = f.readline(len(max(TABLE_STARTS, key=len)))
    except OSError:
        return False
    return first.startswith(TABLE_STARTS)


def _is_report(path: Path) -> bool:
    report = _json(path)
    return isinstance(report, dict) and "seqvpr_version" in report


def _is_history(path: Path) -> bool:
    history = _json(path)
    return isinstance(history, list) and all(
        isinstance(h, dict) and {"epoch", "val_recall"} <= set(h) for h in history)


def _is_plot(path: Path) -> bool:
    suffix = path.suffix.lower()  # as claim() and save_figure() compare it
    try:
        if suffix == ".pdf":
            return b"/Creator (seqvpr" in _tail(path)
        return (b"tEXtSoftware\x00seqvpr" if suffix == ".png" else b"seqvpr") \
            in _head(path, 8192)
    except OSError:
        return False


def _tagged_checkpoint(tag: bytes) -> Callable[[Path], bool]:
    """torch.save files are zip archives whose ``data.pkl`` holds the payload's strings
    verbatim: the format tag is found without torch, without unpickling anything."""
    def recognise(path: Path) -> bool:
        try:
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                return name is not None and tag in z.read(name)
        except (zipfile.BadZipFile, OSError, ValueError):
            return False
    return recognise


MAP = OutputKind("a seqvpr map", True, _is_map,
                 'a manifest.json with "format": "seqvpr-map"')
TABLE = OutputKind("a seqvpr table", False, _is_table,
                   "a CSV or JSON-lines file whose first columns are query_index, query_name")
REPORT = OutputKind("a seqvpr report", False, _is_report,
                    'a JSON object with a "seqvpr_version" key')
PLOT = OutputKind("a seqvpr plot", False, _is_plot, "the seqvpr mark in its metadata",
                  suffixes=PLOT_SUFFIXES)
MODEL = OutputKind("a seqvpr model checkpoint", False, _tagged_checkpoint(b"seqvpr-model"),
                   "the seqvpr-model format tag")
TRAIN_STATE = OutputKind("a seqvpr training state", False,
                         _tagged_checkpoint(b"seqvpr-train-state"),
                         "the seqvpr-train-state format tag")
HISTORY = OutputKind("a seqvpr training history", False, _is_history,
                     "a JSON list of epochs with val_recall")

FEATURE_CACHE = re.compile(r".+-[0-9a-f]{16}\.npy")  # train.features cache files
TRAINING_FILES = {"last.ckpt": TRAIN_STATE, "best.pt": MODEL, "init.pt": MODEL,
                  "history.json": HISTORY, "training_curve.png": PLOT}


def _is_training_dir(path: Path) -> bool:
    """Nothing but what ``seqvpr train`` writes: its files, the feature cache, and the
    temporaries of a run that was killed."""
    try:
        for entry in path.iterdir():
            if entry.name in TRAINING_FILES:
                ok = entry.stat().st_size == 0 or TRAINING_FILES[entry.name].recognise(entry)
            elif entry.name == "features":
                ok = entry.is_dir() and all(FEATURE_CACHE.fullmatch(p.name) or _is_debris(p)
                                            for p in entry.iterdir())
            else:
                ok = _is_debris(entry)
            if not ok:
                return False
    except OSError:
        return False
    return True


def _is_debris(path: Path) -> bool:
    from .atomic import DEBRIS

    return DEBRIS.fullmatch(path.name) is not None


TRAINING_DIR = OutputKind("a seqvpr training folder", True, _is_training_dir,
                          f"nothing but {', '.join(TRAINING_FILES)} and features/",
                          in_place=True)


def claim(path: str | os.PathLike, kind: OutputKind, label: str = "output") -> Path:
    """The real path to write ``kind`` to (links followed), or :class:`OutputError`
    saying why seqvpr may not write there."""
    given = Path(path).expanduser()
    where = f"{label} {path}"
    try:
        real = given.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python 3.11)
        raise OutputError(f"{where}: {describe_os_error(exc)}") from None
    if kind.suffixes and real.suffix.lower() not in kind.suffixes:
        raise OutputError(f"{where}: {kind.name} must be named {', '.join(kind.suffixes)}")
    cwd = Path.cwd().resolve()
    if kind.directory and not kind.in_place and (real == cwd or real in cwd.parents):
        raise OutputError(f"{where} is the working directory or holds it; seqvpr replaces "
                          f"{kind.name} whole, so give a path of its own (e.g. {label} "
                          "maps/route)")
    try:
        st = os.stat(real)
    except (FileNotFoundError, NotADirectoryError):  # (a file on the way: said below)
        st = None
    except OSError as exc:
        raise OutputError(f"{where}: {describe_os_error(exc)}") from None
    if st is not None:
        _check_existing(real, st, kind, where, label)
    _check_writable(real, kind, where, exists=st is not None)
    return real


def _check_existing(real: Path, st: os.stat_result, kind: OutputKind, where: str,
                    label: str) -> None:
    is_dir = stat.S_ISDIR(st.st_mode)
    if kind.directory != is_dir or not (is_dir or stat.S_ISREG(st.st_mode)):
        wanted = "a directory" if kind.directory else "a file"
        raise OutputError(f"{where} is {file_kind(st.st_mode)}; {kind.name} is {wanted}, and "
                          f"seqvpr does not replace one by the other: choose another {label}")
    if is_dir:
        try:
            entries = sorted(p.name for p in real.iterdir())
        except OSError as exc:
            raise OutputError(f"{where}: cannot look inside: {describe_os_error(exc)}") \
                from None
        if not entries or kind.recognise(real):
            return
        raise OutputError(
            f"{where} is a directory holding {len(entries)} entries (e.g. {entries[0]!r}) "
            f"and is not {kind.name} ({kind.hint}); seqvpr replaces only {kind.name} it "
            f"wrote, or an empty directory: choose another {label}")
    if st.st_size == 0 or kind.recognise(real):
        return
    raise OutputError(f"{where} exists and is not {kind.name} ({kind.hint}); seqvpr never "
                      f"overwrites a file it did not write: choose another {label} or move "
                      "the file away")


def _check_writable(real: Path, kind: OutputKind, where: str, exists: bool) -> None:
    """The folder that will receive the new entry must be writable (or creatable)."""
    folder = real if (kind.in_place and exists) else real.parent
    existing = folder
    while not os.path.lexists(existing):
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{where}: {existing} is {file_kind(os.stat(existing).st_mode)}, "
                          "not a directory")
    if _read_only(existing):
        raise OutputError(f"{where}: {existing} is on a read-only file system")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{where}: permission denied: cannot write in {existing}")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows): the write will say
        return False


class OutputPlan:
    """Every output of one command, claimed before the work: refuses a path that is
    not replaceable, and two outputs on one path or one inside another replaced whole
    (``--out`` inside ``--save-map``)."""

    def __init__(self) -> None:
        self._claims: list[tuple[Path, OutputKind, str]] = []

    def claim(self, path: str | os.PathLike, kind: OutputKind, label: str) -> Path:
        real = claim(path, kind, label)
        for other, other_kind, other_label in self._claims:
            if real == other:
                raise OutputError(f"{label} {path} is the same path as {other_label}; each "
                                  "output needs its own (one would silently replace the "
                                  "other)")
            if _replaced_whole(other_kind) and other in real.parents:
                raise OutputError(f"{label} {path} lies inside {other_label} {other}, which "
                                  "is replaced whole")
            if _replaced_whole(kind) and real in other.parents:
                raise OutputError(f"{other_label} {other} lies inside {label} {path}, which "
                                  "is replaced whole")
        self._claims.append((real, kind, label))
        return real


def _replaced_whole(kind: OutputKind) -> bool:
    return kind.directory and not kind.in_place
