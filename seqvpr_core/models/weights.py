"""Reading backbone weights from a local file (never downloaded at run time).

Released checkpoints wrap their tensors differently: a bare state_dict, or one
under ``state_dict`` / ``model_state_dict`` / ``model``, with ``module.``
prefixes from DataParallel. :func:`read_state_dict` peels those layers off.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from ..inputs import read_torch

LOG = logging.getLogger(__name__)

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "teacher")


def _numpy_globals() -> list:
    """The numpy types real training files hold (recalls, best scores as numpy
    scalars and arrays), under their numpy 1 and numpy 2 module names: exactly these
    are allowed besides what ``weights_only`` allows, so no pickled code ever runs."""
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    allowed: list = [np.ndarray, np.dtype]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray.scalar, f"{module}.scalar"),
                    (multiarray._reconstruct, f"{module}._reconstruct")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles dtypes by class
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes)
                    if n.endswith("DType") and n != "ObjectDType"]
    return allowed


def safe_load(path: str | os.PathLike) -> object:
    """``torch.load`` without executing pickled code: tensors, containers, numbers,
    strings, plus the numpy scalars/arrays of released training checkpoints."""
    with torch.serialization.safe_globals(_numpy_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)


def missing_weights_error(encoder: str, weights: str | os.PathLike | None,
                          formats: str) -> FileNotFoundError:
    """The error for ``pretrained=True`` without a usable local weight file."""
    if weights is None:
        return FileNotFoundError(
            f"encoder {encoder!r} has no bundled weights and none are downloaded; pass "
            f"weights=/path/to/file ({formats}) or pretrained=False for random init")
    return FileNotFoundError(f"weights file for encoder {encoder!r} not found: {weights} "
                             f"(expected {formats})")


def weights_to_load(encoder: str, pretrained: bool, weights: str | os.PathLike | None,
                    formats: str) -> str | os.PathLike | None:
    """The local file to load, or None for random initialisation; ``pretrained``
    without a file is the clear error, never a silent random model."""
    if not pretrained:
        return None
    if weights is None:
        raise missing_weights_error(encoder, None, formats)
    return weights


def read_state_dict(path: str | os.PathLike, encoder: str, formats: str) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, unwrapped, with ``module.`` prefixes removed."""
    path = Path(path).expanduser()
    if not os.path.lexists(path):
        raise missing_weights_error(encoder, path, formats)
    state = read_torch(path, f"weights file for encoder {encoder!r}", allow=_numpy_globals())
    while isinstance(state, dict):
        inner = next((state[k] for k in WRAPPER_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path} holds no state_dict of tensors for {encoder!r}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_exact(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike,
               ignored: set[str] = frozenset(), optional: set[str] = frozenset()) -> None:
    """Strict load after dropping ``ignored`` keys; errors name the file and the keys.

    ``optional``: the module's own keys the file may lack (they keep their init,
    e.g. a new projection head on top of an ImageNet backbone).
    """
    dropped = sorted(k for k in state if k in ignored)
    if dropped:
        LOG.info("%s: not used by this model: %s", path, ", ".join(dropped[:8]))
    state = {k: v for k, v in state.items() if k not in ignored}
    own = module.state_dict()
    kept = sorted((set(own) - set(state)) & set(optional))
    if kept:
        LOG.info("%s has no %s; keeping their initial values", path, ", ".join(kept))
    state.update({k: own[k] for k in kept})
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{path} does not match {type(module).__name__}: missing "
                         f"{missing[:6]}{'...' if len(missing) > 6 else ''}, unexpected "
                         f"{unexpected[:6]}{'...' if len(unexpected) > 6 else ''}")
    for key, tensor in state.items():
        if tensor.shape != own[key].shape:
            if tensor.numel() == own[key].numel():  # e.g. GeM p stored as [1] vs []
                state[key] = tensor.reshape(own[key].shape)
            else:
                raise ValueError(f"{path}: {key} has shape {tuple(tensor.shape)}, the model "
                                 f"expects {tuple(own[key].shape)}")
    module.load_state_dict(state, strict=True)
