"""Where a frame encoder runs at inference: eager PyTorch, or ONNX Runtime on the CPU.

Eager PyTorch pays framework overhead on every operator (on our 2-core CPU about
0.1 ms per depthwise convolution, whatever its size), so one small frame through
a MobileNet-style network is mostly overhead: the EfficientNet-Lite0 trunk on a
64x128 frame takes 6.7 ms eager and 2.6 ms in ONNX Runtime. Streaming encodes one
frame at a time, so this is what a robot on a CPU pays per frame. The whole
encoder forward (trunk, pooling, normalisation) runs in one graph: the few small
operators after the trunk cost as much again in eager overhead per frame.

The runtime is a deployment choice, not part of the model: configs, checkpoints,
fingerprints and maps are the same in both, and training always runs in PyTorch
(with autograd enabled the eager path is used). ``auto`` (what the CLI and the ROS
node use unless told otherwise) takes ONNX Runtime wherever it can run the
encoder, and PyTorch elsewhere (GPU, float16, encoders that do not export).
"""

from __future__ import annotations

import io
import logging
import operator
import warnings
from typing import Any

import torch
from torch import nn

from ..catalog import RUNTIMES

LOG = logging.getLogger(__name__)


def check_runtime(name: str) -> None:
    if name not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {name!r}")


def resolve_runtime(name: str, exportable: bool, device: torch.device, half: bool) -> str:
    """The runtime ``name`` means for an encoder on ``device``: ``auto`` is ONNX
    Runtime for float32 on the CPU when the encoder exports and the package is
    installed, torch otherwise; the others are refused where they cannot run."""
    check_runtime(name)
    if name == "auto":
        runs = exportable and device.type == "cpu" and not half and _installed()
        return "onnxruntime" if runs else "torch"
    if name != "torch" and (device.type != "cpu" or half):
        raise ValueError(f"runtime {name!r} runs float32 on the CPU; on {device}"
                         f"{' in half precision' if half else ''} use runtime 'torch'")
    return name


# Bumped whenever any module anywhere registers a parameter, buffer or submodule
# (attribute assignment, ``load_state_dict(assign=True)``): a cue for every
# WeightsKey to gather its module's tensors again.
_registrations = 0


def _registered(*_args) -> None:
    global _registrations
    _registrations += 1


for _hook in (nn.modules.module.register_module_parameter_registration_hook,
              nn.modules.module.register_module_buffer_registration_hook,
              nn.modules.module.register_module_module_registration_hook):
    _hook(_registered)


_VERSION = operator.attrgetter("_version")


class WeightsKey:
    """Calling it gives a value that changes whenever a module's weights may have:
    a tensor written in place (versions), given new storage (data pointers), or
    replaced (registration hooks). What caches derived from weights (folded batch
    norms, exported graphs) compare on every frame: ~30 us for a Lite0 trunk's 200
    tensors, where walking the module tree takes 0.3 ms.

    ``Module._apply`` (``.to()``, ``.half()``) replaces buffers without hooks: the
    module's ``_apply`` must call :meth:`forget`.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._tensors: list[torch.Tensor] = []
        self._gathered_at = -1  # value of _registrations when _tensors was gathered

    def forget(self) -> None:
        self._gathered_at = -1

    def __call__(self) -> tuple:
        if self._gathered_at != _registrations:
            self._tensors = [*self.module.parameters(), *self.module.buffers()]
            self._gathered_at = _registrations
        return (tuple(map(_VERSION, self._tensors)),
                tuple(map(torch.Tensor.data_ptr, self._tensors)))


def _installed() -> bool:
    try:
        _onnxruntime()
    except ImportError:
        return False
    return True


def _onnxruntime() -> Any:
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import onnxruntime
    except ImportError:
        raise ImportError("runtime 'onnxruntime' needs the PyPI packages onnxruntime and onnx: "
                          "`pip install onnxruntime onnx` (both are seqvpr dependencies)") from None
    return onnxruntime


class OnnxRuntimeModule:
    """``module(x)`` for float32 CPU inference through ONNX Runtime.

    The module is exported on first use for the input's shape (the batch size
    stays free) and again whenever one of its tensors changes, so a model that
    keeps training or loads new weights never runs a stale graph. With
    ``fallback`` (runtime ``auto``) a module that does not export runs eagerly,
    with a warning, instead of failing.
    """

    def __init__(self, module: nn.Module, fallback: bool = False) -> None:
        self._ort = _onnxruntime()
        self.module = module
        self.weights_key = WeightsKey(module)
        self.fallback = fallback
        self._session: Any = None  # None after a failed export with fallback: eager
        self._key: tuple | None = None
        self.exports = 0  # how many times the graph was (re)built

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dtype != torch.float32:
            raise ValueError(f"runtime 'onnxruntime' runs float32 on the CPU, got {x.dtype} "
                             f"on {x.device}; use runtime 'torch' there")
        key = (tuple(x.shape[1:]), self.weights_key())
        if key != self._key:
            self._session, self._key = self._export(tuple(x.shape[1:])), key
        if self._session is None:
            return self.module(x)
        y = self._session.run(None, {"x": x.detach().contiguous().numpy()})[0]
        return torch.from_numpy(y)

    def _export(self, shape: tuple[int, ...]) -> Any:
        graph = io.BytesIO()
        # Export traces a normal (not inference-mode) forward without autograd.
        # Sizes computed from the input (TF SAME padding) become constants: right,
        # since the graph is keyed by the input's shape. The TorchScript-based
        # exporter is deprecated since torch 2.9 but takes 1.8 s here against 18 s
        # for the torch.export one (Lite0 trunk); if it goes, test_runtime.py fails.
        try:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", DeprecationWarning)  # the exporter's own
                torch.onnx.export(self.module, (torch.zeros(1, *shape),), graph,
                                  input_names=["x"], output_names=["y"],
                                  dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                                  opset_version=17, dynamo=False)
        except Exception as e:  # the exporter raises many types, with pages of graph
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            problem = (f"{type(self.module).__name__} on input {list(shape)} could not be "
                       f"exported to ONNX ({first[:300]})")
            if self.fallback:
                LOG.warning("%s; it runs in torch instead", problem)
                return None
            raise RuntimeError(f"{problem}; use runtime 'torch'") from e
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.exports += 1
        LOG.debug("exported %s on input %s to ONNX Runtime", type(self.module).__name__,
                  list(shape))
        return self._ort.InferenceSession(graph.getvalue(), options,
                                          providers=["CPUExecutionProvider"])
