"""Tensor contracts shared by every model.

- ``FrameEncoder``: preprocessed images [B, 3, H, W] -> frame features
  [B, *out_shape]: a global vector [B, D] or tokens [B, N, C].
- ``Aggregator``: a window of frame features [B, T, *out_shape] -> one
  descriptor [B, D'], L2-normalised unless the aggregator is configured to give
  the raw vectors its authors search with L2 distance (``normalize: false``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .runtime import OnnxRuntimeModule, check_runtime


@dataclass(frozen=True)
class Preprocess:
    """How raw uint8 RGB frames become encoder input; derived per encoder."""

    size: tuple[int, int]  # (height, width) the frame is resized to
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resize: str = "bilinear"  # antialiased bilinear, or "area": block means (SeqSLAM)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H0, W0, 3] on any device -> float [B, 3, H, W] normalised."""
        x = frames.permute(0, 3, 1, 2)  # NHWC in memory: what the fast kernels below want
        if self.resize == "area" and tuple(x.shape[-2:]) != tuple(self.size):
            x = F.interpolate(x.float(), size=self.size, mode="area")
        elif tuple(x.shape[-2:]) != tuple(self.size):
            # The CPU resizes uint8 images directly, as torchvision and PIL do (a 640x480
            # frame to 224x224 in 0.4 ms instead of 3.6 in float); accelerators resize
            # in float, the only antialiased kernel they have.
            x = x if x.device.type == "cpu" else x.float()
            x = F.interpolate(x, size=self.size, mode="bilinear", antialias=True,
                              align_corners=False)
        scale, shift = _normaliser(self.mean, self.std, x.device)
        return torch.addcmul(shift, x.float(), scale)  # (x / 255 - mean) / std, one pass


@functools.cache
def _normaliser(mean: tuple[float, ...], std: tuple[float, ...],
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel scale and shift, made once per device (no copy to it per frame)."""
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return 1.0 / (255.0 * s), -m / s


class FrameEncoder(nn.Module):
    """Base class: ``forward`` maps [B, 3, H, W] to features [B, *out_shape].

    ``dim`` is the size of the last axis (the feature size per vector/token).
    Token encoders override ``out_shape`` to (N, C) for a fixed input size.
    """

    dim: int
    preprocess: Preprocess
    # Token encoders: the (rows, cols) of their patch tokens and how many extra
    # tokens (CLS) come first; token aggregators that need the layout read these.
    grid: tuple[int, int] | None = None
    prefix_tokens: int = 0

    @property
    def out_shape(self) -> tuple[int, ...]:
        if self.grid is None:
            return (self.dim,)
        return (self.prefix_tokens + self.grid[0] * self.grid[1], self.dim)

    # Whether ``forward`` traces to ONNX, so that another runtime may run it at
    # inference (convolutional encoders); False: this encoder runs only in torch.
    exportable: bool = False
    runtime: OnnxRuntimeModule | None = None
    # Eager CPU inference: most input pixels worth one call (None: any batch). Past
    # it, activations outgrow the CPU caches and a batch costs more per frame than
    # frames one by one (EfficientNet-Lite; benchmarks/streaming.py, queued column).
    cpu_batch_pixels: int | None = None

    def set_runtime(self, name: str, fallback: bool = False) -> None:
        """Run inference in ``name``, ``torch`` or ``onnxruntime``
        (:mod:`seqvpr_core.models.runtime`); ``fallback``: eagerly where export fails."""
        check_runtime(name)
        if name == "auto":
            raise ValueError("resolve runtime 'auto' first (build_model does)")
        if name != "torch" and not self.exportable:
            raise ValueError(f"{type(self).__name__} runs only in torch; `seqvpr models` "
                             f"lists the encoders that also run in {name}")
        self.runtime = None if name == "torch" else OnnxRuntimeModule(self, fallback)

    @property
    def runtime_name(self) -> str:
        """Where inference runs, for logs: ``torch`` or ``onnxruntime``."""
        return "torch" if self.runtime is None else "onnxruntime"

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """``forward``, in the chosen runtime for inference, eager whenever
        autograd may need it."""
        if self.runtime is None or self.training or torch.is_grad_enabled():
            return self(x)
        return self.runtime(x)

    def _apply(self, fn, *args, **kwargs):
        if self.runtime is not None:  # .to(), .half(): tensors may be new
            self.runtime.weights_key.forget()
        return super()._apply(fn, *args, **kwargs)


class Aggregator(nn.Module):
    """Base class: ``forward`` maps [B, T, D] to [B, out_dim(D)], L2-normalised when
    ``normalize`` (the default).

    ``length`` is None for aggregators that accept any window length; otherwise
    the only T they accept.
    """

    length: int | None = None
    # Whether descriptors are unit vectors (searched by inner product). JIST's SeqGeM
    # and vg-transformers' CAT / FC give raw vectors, searched with L2 distance: those
    # aggregators take ``normalize`` and keep the authors' choice one flag away.
    normalize: bool = True
    # The shortest window a variable-length aggregator takes (a temporal convolution
    # of width w needs w frames).
    min_length: int = 1
    # What one frame's features must be: "vector" [D], "tokens" [N, C] on a
    # grid, "tokens+patches" (a CCT's final and tokenizer tokens side by side,
    # [N, 2C]), or "any" (a global vector counts as a single token).
    input_kind: str = "vector"

    @property
    def variable_length(self) -> bool:
        return self.length is None

    @property
    def fusion(self) -> str:
        """Where the window's frames meet (SeqVLAD, Mereu et al., RA-L 2022, Table II):
        ``late``, one descriptor per frame; ``intermediate``, frame tokens or feature
        maps; ``early``, a video network over the window's pixels or patch embeddings
        (timesformer, r2plus1d), which re-runs over every frame of each window, since
        its frame encoder only embeds (each frame is still embedded once)."""
        return "late" if self.input_kind == "vector" else "intermediate"

    @property
    def encodes_frames_once(self) -> bool:
        """Whether all per-frame work is in the encoder, cached once per frame in the
        ring: everything but early fusion."""
        return self.fusion != "early"

    def out_dim(self, in_dim: int) -> int:
        return in_dim

    def check_length(self, t: int) -> None:
        if t < 1:
            raise ValueError("cannot aggregate an empty window (0 frames)")
        if t < self.min_length:
            raise ValueError(f"{type(self).__name__} needs windows of at least "
                             f"{self.min_length} frames, got {t}")
        if self.length is not None and t != self.length:
            raise ValueError(
                f"{type(self).__name__} needs windows of exactly {self.length} frames, "
                f"got {t}; use a variable-length aggregator (avg, max, seqgem) or set "
                f"the window length to {self.length}"
            )


def check_compatible(encoder: FrameEncoder, aggregator: Aggregator, encoder_name: str,
                     aggregator_name: str) -> None:
    """Refuse an encoder whose per-frame output the aggregator cannot read."""
    kind = aggregator.input_kind
    if kind == "vector" and encoder.grid is not None:
        raise ValueError(
            f"aggregator {aggregator_name!r} needs one global vector per frame, but encoder "
            f"{encoder_name!r} gives tokens {tuple(encoder.out_shape)}; pool them in the encoder "
            "(cct*: output='seqpool', dinov2_*: output='cls', resnet*/vgg16: pool='gem') or use "
            "a token aggregator (seqvlad, adapt_stformer)")
    if kind == "tokens+patches" and getattr(encoder, "output", None) != "tokens+patches":
        raise ValueError(
            f"aggregator {aggregator_name!r} needs each frame's final tokens and its "
            f"tokenizer's tokens side by side; use cct224/cct384 with output='tokens+patches'")
    if kind == "tokens" and encoder.grid is None:  # (tokens+patches come with a grid)
        raise ValueError(
            f"aggregator {aggregator_name!r} needs a grid of tokens per frame, but encoder "
            f"{encoder_name!r} gives one {encoder.dim}-d vector; use a token encoder (cct224, "
            "cct384, dinov2_vits14, dinov2_vitb14, or resnet*/vgg16 with pool='none')")


class FrameHead(nn.Module):
    """Per-frame projection after the encoder (JIST's FC after GeM): Linear + L2 on
    the feature axis, so [..., D] -> [..., dim]; computed once per frame."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, dim)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return l2n(self.fc(x))


# Half-precision models (``--half``) compute the two reductions below in float32, as
# autocast would: in float16 eps=1e-12 rounds to 0, so an all-zero vector (an empty
# NetVLAD cluster) normalises to NaN, and x**3 of activations below ~0.02 underflows
# to 0, so GeM of a weak feature map is 0. A no-op cast for float32.


def l2n(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return F.normalize(x.float(), p=2.0, dim=dim, eps=1e-12).to(x.dtype)


def gem_mean(x: torch.Tensor, p: torch.Tensor, dim: int | tuple[int, ...],
             eps: float = 1e-6) -> torch.Tensor:
    """Generalised mean over ``dim`` of ``x`` clamped at ``eps``: (mean x^p)^(1/p)."""
    p = p.float()
    return x.float().clamp(min=eps).pow(p).mean(dim).pow(1.0 / p).to(x.dtype)


class GeM(nn.Module):
    """Generalised-mean pooling over the spatial grid, [B, C, H, W] -> [B, C].

    Radenovic et al., "Fine-tuning CNN image retrieval with no human annotation".
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learn_p: bool = True) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learn_p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem_mean(x, self.p, (-2, -1), self.eps)
