"""Reference fixtures: the authors' code, run, against ours.

A fixture folder (``../shared/reference/*``) holds ``checkpoint.pth`` (the authors'
layout), ``io.pt`` (inputs and the authors' outputs) and ``fixture.json`` (the
facts: generator, config, per-output ``atol``). The runner registered for the
fixture's generator converts the checkpoint and computes every output the
fixture names; an output passes when ``max |ours - theirs| <= atol``. Outputs
named in ``tolerance.atol`` but absent from ``io.pt`` are initialisation checks:
the runner returns them as ``(ours, reference)`` pairs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from . import FIXTURE_RUNNERS, read_release

FILES = ("checkpoint.pth", "io.pt", "fixture.json")


@dataclass
class Fixture:
    path: Path

    @classmethod
    def open(cls, path: str | Path) -> Fixture:
        path = Path(path)
        missing = [name for name in FILES if not (path / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{path} is not a reference fixture: no {', '.join(missing)}")
        return cls(path)

    @cached_property
    def meta(self) -> dict[str, Any]:
        try:
            meta = json.loads((self.path / "fixture.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{self.path / 'fixture.json'} is not valid JSON: {exc}") from None
        for key in ("generator", "config", "tolerance"):
            if key not in meta:
                raise ValueError(f"{self.path / 'fixture.json'} has no {key!r}")
        return meta

    @cached_property
    def io(self) -> dict[str, torch.Tensor]:
        io = torch.load(self.path / "io.pt", map_location="cpu", weights_only=True)
        if not isinstance(io, dict):
            raise ValueError(f"{self.path / 'io.pt'} is not a dict of tensors")
        return io

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pth"

    def release(self) -> Any:
        return read_release(self.checkpoint)

    @property
    def generator(self) -> str:
        return self.meta["generator"]

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]

    @property
    def atol(self) -> dict[str, float]:
        return self.meta["tolerance"]["atol"]

    def frames_nhwc(self, key: str = "frames_u8") -> torch.Tensor:
        """The stored uint8 [U, 3, H, W] frames as the uint8 RGB [U, H, W, 3] our
        models take (their preprocessing normalises them)."""
        return self.io[key].permute(0, 2, 3, 1).contiguous()


@dataclass(frozen=True)
class OutputCheck:
    name: str
    max_abs_diff: float  # inf: not computed or wrong shape
    atol: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol


def compare(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[float, str]:
    ours, theirs = torch.as_tensor(ours), torch.as_tensor(theirs)
    if tuple(ours.shape) != tuple(theirs.shape):
        return math.inf, f"shape {tuple(ours.shape)}, expected {tuple(theirs.shape)}"
    diff = (ours.detach().double() - theirs.double()).abs()
    return (float(diff.max()) if diff.numel() else 0.0), ""


def check_fixture(path: str | Path) -> list[OutputCheck]:
    """Every output of the fixture at ``path``, ours against the authors'."""
    fixture = Fixture.open(path)
    runner = FIXTURE_RUNNERS.get(fixture.generator)
    if runner is None:
        raise ValueError(f"{fixture.path}: no runner for generator {fixture.generator!r}; "
                         f"known: {sorted(FIXTURE_RUNNERS)}")
    with torch.inference_mode():
        outputs = runner(fixture)
    checks = []
    for name, atol in fixture.atol.items():
        value = outputs.get(name)
        if value is None:
            checks.append(OutputCheck(name, math.inf, atol, "not computed"))
            continue
        ours, theirs = value if isinstance(value, tuple) else (value, fixture.io.get(name))
        if theirs is None:
            checks.append(OutputCheck(name, math.inf, atol, "no reference in io.pt"))
            continue
        diff, note = compare(ours, theirs)
        checks.append(OutputCheck(name, diff, atol, note))
    return checks
