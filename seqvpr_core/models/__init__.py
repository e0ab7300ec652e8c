"""Models: registries of frame encoders and sequence aggregators, and the
:class:`SequenceModel` that joins them. Importing this package registers all
built-in models.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from ..inputs import InputError, read_config_file, type_name
from . import aggregators, encoders  # noqa: F401  (registration on import)
from .base import Aggregator, FrameEncoder, Preprocess
from .registry import (
    AGGREGATORS,
    create_aggregator,
    create_encoder,
    list_aggregators,
    list_encoders,
    register_aggregator,
    register_encoder,
)
from .runtime import resolve_runtime
from .sequence_model import SequenceModel, load_model

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but no CUDA device is available")
    return torch.device(name)


def spec_config(spec: str, window: int | None = None) -> dict[str, Any]:
    """Turn a short name ``encoder+aggregator`` into a model config.

    Aggregators that need a fixed window length (``cat``) take it from ``window``.
    """
    parts = spec.split("+")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"model spec {spec!r} is not a checkpoint, a config file or "
                         f"'encoder+aggregator'; encoders: {list_encoders()}, "
                         f"aggregators: {list_aggregators()}")
    encoder, aggregator = parts
    agg: dict[str, Any] = {"name": aggregator}
    factory = AGGREGATORS.get(aggregator)
    if factory is not None and "length" in inspect.signature(factory).parameters:
        if window is None:
            raise ValueError(f"aggregator {aggregator!r} needs a fixed window length; "
                             "pass --window")
        agg["length"] = int(window)
    return {"encoder": {"name": encoder}, "aggregator": agg}


def build_model(spec: str | Path | dict, window: int | None = None, device: str = "cpu",
                half: bool = False, runtime: str = "torch") -> SequenceModel:
    """A model from a checkpoint path, a YAML/JSON config file, a config dict or
    a short name such as ``efficientnet_lite0+seqgem`` (pretrained weights), in
    eval mode on ``device`` (``auto``: CUDA when present), float16 if ``half``,
    its encoder's inference in ``runtime`` (``auto``: ONNX Runtime wherever it
    can run the encoder; :mod:`.runtime`)."""
    path = None if isinstance(spec, dict) else Path(spec)
    if path is None:
        model = SequenceModel(spec)
    elif path.suffix in CHECKPOINT_SUFFIXES:
        model = load_model(path)
    elif path.suffix in CONFIG_SUFFIXES:
        config = read_config_file(path, "model config")
        if isinstance(config, dict) and isinstance(config.get("model"), dict):
            config = config["model"]  # a training config: its model
        if not isinstance(config, dict):
            raise InputError(f"model config {path} must be a mapping with encoder and "
                             f"aggregator, got {type_name(config)}")
        try:
            model = SequenceModel(config)
        except (ValueError, TypeError) as exc:
            raise InputError(f"model config {path}: {exc}") from None
    else:
        model = SequenceModel(spec_config(str(spec), window))
    torch_device = resolve_device(device)
    if half and torch_device.type != "cuda":
        raise ValueError("half precision needs a CUDA device")
    resolved = resolve_runtime(runtime, model.encoder.exportable, torch_device, half)
    model.encoder.set_runtime(resolved, fallback=runtime == "auto")
    model = model.to(torch_device)
    return (model.half() if half else model).eval()


__all__ = [
    "Aggregator", "FrameEncoder", "Preprocess", "SequenceModel", "build_model", "load_model",
    "resolve_device", "spec_config", "create_encoder", "create_aggregator", "list_encoders",
    "list_aggregators", "register_encoder", "register_aggregator",
]
