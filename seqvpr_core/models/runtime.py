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
(with autograd enabled the eager path is used).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

RUNTIMES = ("torch", "onnxruntime")


def check_runtime(name: str) -> None:
    if name not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {name!r}")


def tensors_key(tensors: Iterable[torch.Tensor]) -> tuple:
    """Changes whenever one of ``tensors`` is written in place, replaced or cast:
    what caches derived from weights (folded batch norms, exported graphs) compare."""
    return tuple((t.data_ptr(), t._version, t.dtype) for t in tensors)


def _onnxruntime() -> Any:
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import onnxruntime
    except ImportError:
        raise ImportError("runtime 'onnxruntime' needs the PyPI packages onnxruntime and onnx: "
                          "`pip install onnxruntime onnx` (both come with seqvpr[cpu])") from None
    return onnxruntime


class OnnxRuntimeModule:
    """``module(x)`` for float32 CPU inference through ONNX Runtime.

    The module is exported on first use for the input's shape (the batch size
    stays free) and again whenever one of its tensors changes, so a model that
    keeps training or loads new weights never runs a stale graph.
    """

    def __init__(self, module: nn.Module, weights_key: Callable[[], tuple]) -> None:
        """``weights_key()`` changes whenever the module's weights do (see
        :func:`tensors_key`); asked on every call, so keep it cheap."""
        self._ort = _onnxruntime()
        self.module = module
        self.weights_key = weights_key
        self._session: Any = None
        self._key: tuple | None = None
        self.exports = 0  # how many times the graph was (re)built

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dtype != torch.float32:
            raise ValueError(f"runtime 'onnxruntime' runs float32 on the CPU, got {x.dtype} "
                             f"on {x.device}; use runtime 'torch' there")
        key = (tuple(x.shape[1:]), self.weights_key())
        if key != self._key:
            self._session, self._key = self._export(tuple(x.shape[1:])), key
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
            raise RuntimeError(f"{type(self.module).__name__} on input {list(shape)} could not "
                               f"be exported to ONNX ({first[:300]}); use runtime 'torch'") from e
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.exports += 1
        return self._ort.InferenceSession(graph.getvalue(), options,
                                          providers=["CPUExecutionProvider"])
