"""Taking apart the files the authors' training code writes.

A release wraps its state dict (``state_dict``, ``model_state_dict``, or bare),
prefixes keys (``module.`` from DataParallel, the authors' module names) and keeps
keys a model does not use. These helpers get at the tensors and say exactly
which keys are missing or unexpected when a file is not what ``--from`` says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch


def state_dict_of(release: Any, wrappers: Iterable[str] = ("state_dict", "model_state_dict")
                  ) -> dict[str, torch.Tensor]:
    """The tensors of ``release``: the dict under the first of ``wrappers`` it has,
    or the release itself when it is a bare state dict."""
    if not isinstance(release, Mapping):
        raise ValueError(f"expected a dict of tensors or a training checkpoint dict, got "
                         f"{type(release).__name__}")
    for key in wrappers:
        inner = release.get(key)
        if isinstance(inner, Mapping):
            release = inner
            break
    tensors = {k: v for k, v in release.items() if torch.is_tensor(v)}
    if not tensors:
        raise ValueError(f"no tensors found (top-level keys: {sorted(map(str, release))[:8]})")
    return tensors


def unprefixed(release: Any, wrappers: Iterable[str] = ("state_dict", "model_state_dict")
               ) -> dict[str, torch.Tensor]:
    """:func:`state_dict_of` with every ``module.`` (DataParallel) removed, as the
    authors' loaders do."""
    return {k.replace("module.", ""): v for k, v in state_dict_of(release, wrappers).items()}


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys under ``prefix`` with it removed (``module.`` anywhere it wraps them too)."""
    out = {}
    for key, value in state.items():
        key = key.replace("module.", "")
        if key.startswith(prefix):
            out[key[len(prefix):]] = value
    return out


def require(state: Mapping[str, torch.Tensor], patterns: Iterable[str], what: str,
            allowed: Iterable[str] = ()) -> None:
    """Refuse ``state`` unless every regex of ``patterns`` matches some key and every
    key matches one of ``patterns`` or ``allowed``; the error names the keys."""
    patterns, allowed = list(patterns), list(allowed)
    missing = [p for p in patterns if not any(re.fullmatch(p, k) for k in state)]
    unexpected = sorted(k for k in state
                        if not any(re.fullmatch(p, k) for p in patterns + allowed))
    if missing or unexpected:
        raise ValueError(f"not a {what} checkpoint: missing keys matching {missing[:6]}, "
                         f"unexpected keys {unexpected[:6]}"
                         f"{' ...' if len(unexpected) > 6 else ''}")


def only_under(state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...], what: str
               ) -> None:
    """Refuse ``state`` if a key lies outside ``prefixes``: a file of another format
    (the error names the format, its prefixes and the first stray keys)."""
    unexpected = sorted(k for k in state if not k.startswith(prefixes))
    if unexpected:
        expected = ", ".join(f"{p}*" for p in prefixes)
        raise ValueError(f"not a {what} checkpoint ({expected}): unexpected keys "
                         f"{unexpected[:6]}")


def cnn_trunk(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The seqvpr CNN encoder (name, ``layer3_crop``) whose ``backbone`` takes a
    torchvision trunk's keys as ``nn.Sequential`` indices (prefix removed): ResNet-18/50
    ``children()[:-2]`` (or cut after layer3), or VGG-16 ``features[:-2]``."""
    conv1 = state.get("0.weight")
    if conv1 is not None and tuple(conv1.shape[-2:]) == (3, 3):
        if "28.weight" not in state or any(int(k.split(".")[0]) > 28 for k in state):
            raise ValueError("a VGG-16 trunk must end at conv5_3 (features index 28)")
        return {"name": "vgg16"}
    if conv1 is None or "1.running_var" not in state:
        raise ValueError(f"unknown CNN trunk keys {sorted(state)[:6]} (expected a torchvision "
                         "ResNet or VGG-16 as Sequential indices)")
    if "6.6.conv1.weight" in state:
        raise ValueError("ResNet-101/152 trunks are not supported (seqvpr has ResNet-18/50)")
    name = "resnet50" if "4.0.conv3.weight" in state else "resnet18"
    return {"name": name, "layer3_crop": "7.0.conv1.weight" not in state}
