"""Reading the files users hand us: every error names the file, the key and what was
expected, and none is a traceback.

One rule for every file seqvpr reads (configs, manifests, checkpoints, CSVs, images):

- :func:`regular_file` first: a missing path, a directory, a FIFO (reading one would
  block forever), a device, a symbolic-link loop or a permission problem is an
  :class:`InputError` (or ``FileNotFoundError``) that says which and where;
- :func:`read_json`, :func:`read_yaml`, :func:`read_torch` then parse it, turning
  syntax errors, truncation and foreign pickles into one line naming the file;
- :func:`fields` checks a parsed mapping's shape: unknown keys are refused (a typo
  would otherwise be ignored), each known key has its type, the message gives
  ``file: key`` and what was expected.

Numbers are checked with :mod:`seqvpr_core.limits` where they enter.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """A file or value seqvpr cannot use; the message names which and why."""


def _stat(path: Path, what: str, verb: str) -> os.stat_result:
    """``path.stat()`` (symbolic links followed), its failures named for the user."""
    try:
        return path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot {verb} {what} {path}: {describe_os_error(exc)}") from None


def regular_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` if it is a readable regular file (symbolic links followed)."""
    path = Path(path)
    st = _stat(path, what, "read")
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} {path} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what} {path} is {file_kind(st.st_mode)}, not a regular file")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {what} {path}: permission denied")
    return path


def directory(path: str | os.PathLike, what: str) -> Path:
    """``path`` if it is a directory that can be listed."""
    path = Path(path)
    st = _stat(path, what, "open")
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} {path} is {file_kind(st.st_mode)}, not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise InputError(f"cannot list {what} {path}: permission denied")
    return path


def file_kind(mode: int) -> str:
    """A file type in words, for messages."""
    for test, words in ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a directory"),
                        (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return words
    return "a special file"


def describe_os_error(exc: BaseException) -> str:
    """``Permission denied`` / ``Too many levels of symbolic links`` ... without Errno."""
    if isinstance(exc, RuntimeError):  # pathlib's symlink-loop error on some Pythons
        return "a symbolic link loop"
    return exc.strerror or str(exc)


def read_text(path: str | os.PathLike, what: str) -> str:
    path = regular_file(path, what)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {exc.start}); is it the "
                         "right file?") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {describe_os_error(exc)}") from None


def read_json(path: str | os.PathLike, what: str) -> Any:
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
                         f"column {exc.colno}") from None
    except RecursionError:
        raise InputError(f"{what} {path} nests too deeply to be a {what}") from None


def read_yaml(path: str | os.PathLike, what: str) -> Any:
    import yaml

    text = read_text(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1} column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{what} {path} is not valid YAML: {problem}{at}") from None
    except RecursionError:
        raise InputError(f"{what} {path} nests too deeply to be a {what}") from None


def read_config_file(path: str | os.PathLike, what: str) -> Any:
    """A ``.json`` file as JSON, anything else as YAML (a superset of JSON)."""
    return read_json(path, what) if Path(path).suffix == ".json" else read_yaml(path, what)


def read_torch(path: str | os.PathLike, what: str, map_location: Any = "cpu",
               allow: list = ()) -> Any:
    """``torch.load(weights_only=True)``: no pickled code runs (``allow``: classes the
    file may hold besides, e.g. numpy scalars); a truncated, damaged or foreign file is
    an :class:`InputError` naming it."""
    import torch

    path = regular_file(path, what)
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {describe_os_error(exc)}") from None
    except Exception as exc:  # noqa: BLE001  (zip, pickle and torch errors alike)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{what} {path} cannot be read ({first}); the file is truncated, "
                         "damaged or not a PyTorch file") from None


def fields(value: Any, where: str, required: Mapping[str, type | tuple[type, ...]],
           optional: Mapping[str, type | tuple[type, ...]] = {}) -> dict[str, Any]:
    """``value`` as a dict with exactly these keys: every required one, any optional one,
    nothing else, each of its type (``int`` never accepts a bool; ``float`` takes ints)."""
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a mapping of keys to values, got "
                         f"{type_name(value)}")
    known = {**required, **optional}
    unknown = sorted(str(k) for k in value if k not in known)
    if unknown:
        raise InputError(f"{where}: unknown keys {unknown}; known keys: {sorted(known)}")
    missing = sorted(k for k in required if k not in value)
    if missing:
        raise InputError(f"{where}: missing keys {missing}")
    for key, types in known.items():
        if key in value:
            expect(value[key], f"{where}: {key}", types)
    return value


def expect(value: Any, where: str, types: type | tuple[type, ...]) -> Any:
    """``value`` if it has one of ``types``, else InputError naming ``where``."""
    types = types if isinstance(types, tuple) else (types,)
    ok = any(_is(value, t) for t in types)
    if not ok:
        wanted = " or ".join(_TYPE_WORDS.get(t, t.__name__) for t in types)
        raise InputError(f"{where} must be {wanted}, got {type_name(value)}")
    return value


def _is(value: Any, t: type) -> bool:
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is type(None):
        return value is None
    return isinstance(value, t)


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               dict: "a mapping", list: "a list", type(None): "empty (null)"}


def type_name(value: Any) -> str:
    """A value in words: ``a list ([1, 2])``, ``a string ('fast')``."""
    if value is None:
        return "null (nothing)"
    words = {bool: "a boolean", int: "an integer", float: "a number"}.get(
        type(value)) or _TYPE_WORDS.get(type(value), f"a {type(value).__name__}")
    text = repr(value)
    return f"{words} ({text[:60]}{'...' if len(text) > 60 else ''})"
