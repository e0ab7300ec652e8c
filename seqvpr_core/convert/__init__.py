"""The authors' checkpoints as seqvpr models, and the check that they compute what
the authors' code computes.

Two registries, filled on import of this package (one module per family of
releases, e.g. :mod:`.seqnet`):

- converters, by release format (``seqvpr convert --from FORMAT``):
  ``fn(release, config) -> SequenceModel``. ``release`` is the file as loaded by
  :func:`~seqvpr_core.models.weights.safe_load` (wrappers and all); ``config`` is
  the user's ``--config`` (a partial model config for what the file does not
  determine, e.g. the frame encoder of a head-only file). The result is an
  ordinary seqvpr model: ``build-map``, ``localize``, ``eval`` and the node take it.
- fixture runners, by the ``generator`` of a reference fixture
  (``../shared/reference/*/fixture.json``): ``fn(fixture) -> outputs``, each output
  computed by a model made with the converter (:mod:`.reference`). A runner names
  the encoders / aggregators of our registries its fixtures check (``verifies``):
  ``seqvpr models`` marks them (the test suite runs every fixture).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..inputs import regular_file
from ..models import SequenceModel
from ..models.weights import safe_load

Converter = Callable[[Any, dict[str, Any]], SequenceModel]

CONVERTERS: dict[str, Converter] = {}
FIXTURE_RUNNERS: dict[str, Callable] = {}
# registry name (encoder or aggregator; ``pool=NAME``: a CNN encoder head) -> the
# fixture families that check it
VERIFIED: dict[str, list[str]] = {}


def register_converter(name: str):
    """Decorator: ``fn(release, config) -> SequenceModel`` for ``--from name``."""
    def wrap(fn: Converter) -> Converter:
        if name in CONVERTERS:
            raise ValueError(f"converter {name!r} is registered twice")
        CONVERTERS[name] = fn
        return fn

    return wrap


def register_fixture(generator: str, verifies: tuple[str, ...] = ()):
    """Decorator: the runner of the reference fixtures made by ``generator``;
    ``verifies``: the registry entries whose code those fixtures check."""
    def wrap(fn: Callable) -> Callable:
        if generator in FIXTURE_RUNNERS:
            raise ValueError(f"fixture runner {generator!r} is registered twice")
        FIXTURE_RUNNERS[generator] = fn
        for name in verifies:
            VERIFIED.setdefault(name, []).append(generator.removeprefix("gen_"))
        return fn

    return wrap


def list_formats() -> list[str]:
    return sorted(CONVERTERS)


def read_release(path: str | os.PathLike) -> Any:
    """A released checkpoint, read without running pickled code."""
    path = regular_file(Path(path).expanduser(), "checkpoint")  # a FIFO would block
    try:
        return safe_load(path)
    except Exception as exc:  # noqa: BLE001  (torch raises many kinds for a bad file)
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from None


def convert(fmt: str, path: str | os.PathLike, config: dict[str, Any] | None = None
            ) -> SequenceModel:
    """The model in ``path``, a release of format ``fmt``, in eval mode."""
    if fmt not in CONVERTERS:
        raise ValueError(f"unknown checkpoint format {fmt!r}; known: {list_formats()}")
    release = read_release(path)
    try:
        model = CONVERTERS[fmt](release, dict(config or {}))
    except ValueError as exc:
        raise ValueError(f"{path} (--from {fmt}): {exc}") from None
    # Every tensor is in the model now: it must not look for the --config's weight files.
    for key in ("pretrained", "weights"):
        model.config["encoder"].pop(key, None)
    return model.eval()


# registration on import
from . import (  # noqa: E402, F401
    adapt_stformer,
    cosplace,
    dinov2,
    mixvpr,
    netvlad,
    seqnet,
    stformer,
    vg_transformers,
)

__all__ = ["CONVERTERS", "FIXTURE_RUNNERS", "VERIFIED", "convert", "list_formats", "read_release",
           "register_converter", "register_fixture"]
