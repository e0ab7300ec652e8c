"""Atomic writes: a reader, or a crash at any instant, never sees half a file or no map.

- Files (:func:`atomic_path`): written to a temporary file beside the target (the
  target's suffix kept, for writers that pick a format from it), flushed to disk,
  renamed over the target.
- Directories (:func:`atomic_directory`, maps): a complete temporary directory beside
  the target, then two renames: the target to ``.NAME.old-PID-XXXXXXXX``, the new
  directory to the target, and the old one is removed. A kill between the two renames
  leaves no directory at the target but the previous one complete under its ``.old``
  name; :func:`recover_directory` (every map load runs it) puts it back, so a load
  finds a whole map at every instant.
- Temporaries are created with the user's umask (``tempfile`` would give 0600/0700:
  a node running as another user could not read the map), and the debris of killed
  writers (their temporaries and old copies) is removed by the next write of the same
  target.
- What may be replaced at all is :mod:`seqvpr_core.outputs`' rule; writers given a
  ``kind`` check it again, so library callers get the same rule as the commands.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .inputs import describe_os_error
from .outputs import PLOT, OutputError, OutputKind, claim

LOG = logging.getLogger(__name__)
T = TypeVar("T")

# .NAME.tmp-PID-XXXXXXXX[.suffix] (a write in progress) / .NAME.old-PID-XXXXXXXX (a
# directory being replaced)
DEBRIS = re.compile(r"\.(?P<name>.+)\.(?P<tag>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}"
                    r"(?P<suffix>\.[^.]*)?")


def _debris_name(base: str, tag: str, suffix: str = "") -> str:
    return f".{base}.{tag}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def _debris_of(target: Path, tags: tuple[str, ...], is_dir: bool) -> list[tuple[Path, int]]:
    """(path, writer pid) of the temporaries / old copies left beside ``target``."""
    base, suffix = (target.name, "") if is_dir else (target.stem, target.suffix)
    found = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return []
    for p in entries:
        m = DEBRIS.fullmatch(p.name)
        if (m and m["name"] == base and m["tag"] in tags and (m["suffix"] or "") == suffix):
            found.append((p, int(m["pid"])))
    return found


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_debris(target: Path, is_dir: bool, tags: tuple[str, ...] = ("tmp", "old")) -> None:
    """Remove what killed writers of ``target`` left behind (never a live writer's)."""
    for path, pid in _debris_of(target, tags, is_dir):
        if not _alive(pid):
            LOG.info("removing %s, left by a killed write of %s", path, target)
            _remove(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories: not our concern
        pass
    finally:
        os.close(fd)


def _new_file(folder: Path, base: str, suffix: str) -> Path:
    """An empty new file with the user's umask (os.open applies it; mkstemp forces 0600)."""
    while True:
        path = folder / _debris_name(base, "tmp", suffix)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue


def _new_dir(folder: Path, base: str) -> Path:
    while True:
        path = folder / _debris_name(base, "tmp")
        try:
            os.mkdir(path, 0o777)  # the umask applies
            return path
        except FileExistsError:
            continue


def _write_error(target: Path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write {target}: {describe_os_error(exc)}")


@contextmanager
def atomic_path(path: str | os.PathLike, kind: OutputKind | None = None) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed over it when the block succeeds and
    removed when it fails. It keeps ``path``'s suffix, so writers that pick a format
    from the name (numpy, matplotlib) still do. With ``kind``, an existing ``path``
    must be replaceable by the :mod:`~seqvpr_core.outputs` rule."""
    target = claim(path, kind) if kind is not None else Path(path)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_debris(target, is_dir=False)
        tmp = _new_file(target.parent, target.stem, target.suffix)
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync(target.parent)
    except OSError as exc:
        raise _write_error(target, exc) from exc
    finally:
        if tmp is not None and os.path.lexists(tmp):
            tmp.unlink()


@contextmanager
def atomic_directory(path: str | os.PathLike, kind: OutputKind) -> Iterator[Path]:
    """A new empty directory beside ``path``; when the block succeeds it replaces
    ``path`` whole (see the module docstring for why that is safe at every instant)."""
    target = claim(path, kind)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_debris(target, is_dir=True, tags=("tmp",))
        tmp = _new_dir(target.parent, target.name)
        yield tmp
        for entry in tmp.iterdir():
            _fsync(entry)
        _fsync(tmp)
        replace_directory(tmp, target)
        remove_debris(target, is_dir=True)
    except OSError as exc:
        raise _write_error(target, exc) from exc
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def replace_directory(new: Path, target: Path) -> None:
    """Rename the complete directory ``new`` over ``target``: the old one is moved
    aside first, and removed only once the new one is in place."""
    old = None
    if os.path.lexists(target):
        old = target.parent / _debris_name(target.name, "old")
        os.replace(target, old)
    os.replace(new, target)  # a kill just before this: recover_directory finds `old`
    _fsync(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_directory(target: Path, read: Callable[[Path], T]) -> T | None:
    """After a replace killed between its two renames: ``read`` of the previous
    directory (the newest ``.NAME.old-*`` that ``read`` accepts; it raises ValueError on
    a damaged one), moved back to ``target`` unless its writer still runs or the folder
    is read-only (then it is read where it is). None when there is nothing to recover."""
    if os.path.lexists(target):
        return None
    candidates = sorted(_debris_of(target, ("old",), is_dir=True),
                        key=lambda c: c[0].stat().st_mtime_ns, reverse=True)
    for path, pid in candidates:
        try:
            result = read(path)
        except ValueError:
            continue
        if _alive(pid):
            return result
        try:
            os.rename(path, target)
        except OSError as exc:
            LOG.warning("%s was missing after an interrupted save; reading the previous "
                        "version in place from %s (%s)", target, path, describe_os_error(exc))
            return result
        LOG.warning("%s was missing after an interrupted save; restored the previous "
                    "version from %s", target, path.name)
        return read(target)  # what refers to files inside it now refers to the target
    return None


def write_json(path: str | os.PathLike, obj: Any, kind: OutputKind | None = None) -> None:
    with atomic_path(path, kind) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def save_figure(fig, path: str | os.PathLike, **savefig_kw) -> None:
    """Write a matplotlib figure atomically, marked as seqvpr's, and release it."""
    import matplotlib.pyplot as plt

    from . import __version__

    key = "Software" if Path(path).suffix.lower() == ".png" else "Creator"
    try:
        with atomic_path(path, PLOT) as tmp:
            fig.savefig(tmp, metadata={key: f"seqvpr {__version__}"}, **savefig_kw)
    finally:
        plt.close(fig)
