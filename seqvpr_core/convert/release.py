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
