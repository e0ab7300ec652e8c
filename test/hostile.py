"""Helpers of the hostile-input tests (test_hostile_*.py): run a command as the user
meets it, and check that a refusal is clean.

A refused command must exit 2 with one line naming the culprit, print no traceback,
and touch nothing outside its own outputs. Most cases call ``main()`` in the test
process (:func:`call`): a subprocess would add two seconds of imports per case and
nothing else. Where the process is what the user meets (exit codes through
``SystemExit``, a hang on a FIFO, kill -9, another user's permissions, a full or
read-only disk) the case runs the real command in a subprocess (:func:`run`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def call(argv: list[str], capsys) -> tuple[int, str, str]:
    """``seqvpr ARGV`` in this process: (exit code, stdout, stderr)."""
    from seqvpr_core.cli.main import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse refusing an option
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def refused(result: tuple[int, str, str] | subprocess.CompletedProcess, *culprits: str) -> str:
    """Assert a clean refusal naming every culprit; returns stderr."""
    if isinstance(result, subprocess.CompletedProcess):
        code, err = result.returncode, result.stderr
    else:
        code, _, err = result
    assert "Traceback" not in err, err
    assert code == 2, f"exit {code}: {err}"
    for culprit in culprits:
        assert culprit in err, f"{culprit!r} not in: {err}"
    return err


def run(argv: list[str], *, cwd: Path | None = None, timeout: float = 600,
        env: dict[str, str] | None = None, prefix: list[str] = ()
        ) -> subprocess.CompletedProcess:
    """``seqvpr ARGV`` as a subprocess (``prefix``: e.g. setpriv to run as another user)."""
    cmd = [*prefix, sys.executable, "-m", "seqvpr_core.cli.main", *map(str, argv)]
    return subprocess.run(cmd, cwd=cwd or REPO, capture_output=True, text=True,
                          timeout=timeout, env={**base_env(), **(env or {})})


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, mode, size and content digest."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = None
            if p.is_file() and not p.is_symlink():
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
            state[str(p.relative_to(root))] = (st.st_mode, st.st_size, digest)
    return state


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


@contextmanager
def no_hang(seconds: int = 30) -> Iterator[None]:
    """Fail instead of blocking forever (a FIFO read): SIGALRM interrupts the syscall."""
    import signal

    def expire(*_):
        raise TimeoutError(f"blocked for {seconds} s (reading a FIFO?)")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --- another user, a tmpfs ------------------------------------------------------------

def as_other_user() -> list[str]:
    """The prefix that runs a command without our privileges: root reads and writes
    anything, so permission cases run as ``nobody`` there."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot drop privileges")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@contextmanager
def shared_dir() -> Iterator[Path]:
    """A scratch folder the unprivileged user of :func:`as_other_user` can enter
    (pytest's tmp_path is private to us)."""
    path = Path(tempfile.mkdtemp(prefix="seqvpr-hostile-", dir="/tmp"))
    try:
        path.chmod(0o777)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def tmpfs_script(script: str, mountpoint: Path, size: str, timeout: float = 600
                 ) -> subprocess.CompletedProcess:
    """Run shell ``script`` with a real tmpfs of ``size`` mounted at ``mountpoint`` (in
    a private mount namespace, so nothing outside sees it); skips where the machine
    allows no such mount."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare: cannot mount a tmpfs for a full or read-only disk")
    mountpoint.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            f"mount -t tmpfs -o size=64k tmpfs '{mountpoint}'"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"this machine allows no private tmpfs mount ({probe.stderr.strip()})")
    full = f"mount -t tmpfs -o size={size} tmpfs '{mountpoint}' && {script}"
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                           full], capture_output=True, text=True, timeout=timeout,
                          env=base_env(), cwd=REPO)


def cli_line(argv: list[str]) -> str:
    """``seqvpr ARGV`` as a shell command line, for :func:`tmpfs_script`."""
    import shlex

    return " ".join(shlex.quote(str(a)) for a in
                    [sys.executable, "-m", "seqvpr_core.cli.main", *argv])


def huge_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid grayscale PNG of width x height (a few hundred KB: all black)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    z = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(
        ">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path
