"""Shared fixtures: real Nordland frames and small helpers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from seqvpr_core.data import read_image_folder

REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "seqvpr_core" / "demo_data" / "nordland"
SHARED_NORDLAND = REPO.parent / "shared" / "data" / "nordland64"


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def nordland() -> Path:
    """Frame-aligned summer/ and winter/ folders of real Nordland thumbnails."""
    return DEMO_DATA


@pytest.fixture(scope="session")
def summer(nordland):
    return read_image_folder(nordland / "summer")


@pytest.fixture(scope="session")
def winter(nordland):
    return read_image_folder(nordland / "winter")


def copy_frames(src: Path, dst: Path, n: int) -> Path:
    """The first ``n`` images of ``src`` in a fresh folder (a small real traversal)."""
    dst.mkdir(parents=True)
    for p in sorted(src.iterdir())[:n]:
        if p.suffix == ".png":
            shutil.copy(p, dst / p.name)
    return dst
