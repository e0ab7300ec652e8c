"""Encoder inference in ONNX Runtime: the same features and descriptors as eager
PyTorch, the same model identity, re-exported when weights change, eager under
autograd, and clear refusals where it does not apply."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqvpr_core.data import read_image
from seqvpr_core.maps import PlaceMap
from seqvpr_core.models import build_model
from seqvpr_core.models.encoders.efficientnet_lite import grid_mean
from seqvpr_core.models.runtime import resolve_runtime
from seqvpr_core.stream import LocalizerConfig, StreamingLocalizer, WindowConfig

pytest.importorskip("onnxruntime", reason="onnxruntime, a seqvpr dependency, is missing")

LITE0_GRID = {"encoder": {"name": "efficientnet_lite0", "stage": 5, "pool_grid": [2, 4],
                          "image_size": [64, 128]}, "aggregator": "seqgem"}


def _frames(traversal, n: int) -> list[np.ndarray]:
    return [read_image(p) for p in traversal.paths[100:100 + n]]


@pytest.fixture(scope="module")
def models():
    return build_model(LITE0_GRID), build_model(LITE0_GRID, runtime="onnxruntime")


def test_same_features_and_identity_as_eager(models, summer):
    eager, onnx = models
    frames = _frames(summer, 7)
    torch.testing.assert_close(onnx.encode_frames(frames), eager.encode_frames(frames),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(onnx.encode_frames(frames[:1]), eager.encode_frames(frames[:1]),
                               rtol=0, atol=1e-5)
    assert onnx.encoder.runtime.exports == 1  # one graph for every batch size
    assert onnx.fingerprint() == eager.fingerprint()  # maps work with either runtime


# Encoders without weights files here run with random weights, copied from eager to ORT.
RANDOM_INIT = {
    "resnet18 GeM+FC (CosPlace)": {"encoder": {"name": "resnet18", "pretrained": False,
                                               "pool": "gem", "fc_dim": 64,
                                               "image_size": [64, 96]}, "aggregator": "seqgem"},
    "resnet18 tokens (SeqVLAD)": {"encoder": {"name": "resnet18", "pretrained": False,
                                              "pool": "none", "image_size": [64, 96]},
                                  "aggregator": "seqvlad"},
    "cct224 tokens": {"encoder": {"name": "cct224", "pretrained": False, "layers": 2},
                      "aggregator": "seqvlad"},
    "cct224 seqpool": {"encoder": {"name": "cct224", "pretrained": False, "layers": 2,
                                   "output": "seqpool"}, "aggregator": "seqgem"},
}


@pytest.mark.parametrize("name", list(RANDOM_INIT))
def test_other_encoders_run_in_onnxruntime_too(summer, name):
    """CNN encoders with their heads (JIST, CosPlace, SeqVLAD on layer-3 tokens) and CCT
    (SeqVLAD/STformer tokens, or sequence-pooled) export the same way."""
    config = RANDOM_INIT[name]
    eager, onnx = build_model(config), build_model(config, runtime="onnxruntime")
    onnx.load_state_dict(eager.state_dict())
    frames = _frames(summer, 3)
    torch.testing.assert_close(onnx.encode_frames(frames), eager.encode_frames(frames),
                               rtol=0, atol=1e-4)
    assert onnx.encoder.runtime.exports == 1


@pytest.mark.parametrize(("size", "fmap"), [((64, 128), (4, 8)), ((72, 128), (5, 8)),
                                            ((224, 224), (14, 14))])
def test_grid_pooling_exports_whatever_the_map_size(summer, size, fmap):
    """A 2x4 grid divides a 4x8 map (fixed-kernel pool), not 5x8 or 14x14 (pooling
    matrix); both forms run in ONNX Runtime and equal adaptive pooling."""
    config = {**LITE0_GRID, "encoder": {**LITE0_GRID["encoder"], "image_size": list(size)}}
    eager, onnx = build_model(config), build_model(config, runtime="onnxruntime")
    frames = _frames(summer, 2)
    torch.testing.assert_close(onnx.encode_frames(frames), eager.encode_frames(frames),
                               rtol=0, atol=1e-5)
    x = torch.rand(3, 8, *fmap, requires_grad=True)
    pooled = grid_mean(x, (2, 4))
    torch.testing.assert_close(pooled, F.adaptive_avg_pool2d(x, (2, 4)))
    pooled.sum().backward()  # differentiable for training
    assert x.grad is not None


@pytest.mark.parametrize(("size", "runtime", "calls"), [((224, 224), "torch", [1] * 5),
                                                        ((64, 128), "torch", [5]),
                                                        ((224, 224), "onnxruntime", [5])])
def test_eager_lite_on_a_cpu_encodes_in_cache_sized_calls(summer, size, runtime, calls):
    """Eager EfficientNet-Lite on the CPU takes one 224x224 frame per call (batches
    cost twice as much per frame there) and up to eight 64x128 frames; ONNX Runtime
    takes any batch. The features equal those of one call either way."""
    config = {"encoder": {"name": "efficientnet_lite0", "image_size": list(size)},
              "aggregator": "seqgem"}
    model = build_model(config, runtime=runtime)
    frames = _frames(summer, 5)
    sizes, encode = [], model.encode
    model.encode = lambda x: sizes.append(len(x)) or encode(x)
    features = model.encode_frames(frames)
    assert sizes == calls
    with torch.inference_mode():
        torch.testing.assert_close(features, encode(model.preprocess(frames)),
                                   rtol=0, atol=1e-5)


def test_streaming_through_onnxruntime_matches_eager(models, summer):
    descriptors = []
    for model in models:
        loc = StreamingLocalizer(model, PlaceMap(model.descriptor_dim),
                                 LocalizerConfig("mapping", WindowConfig.fixed(4)))
        results = [r for i, f in enumerate(_frames(summer, 9)) if (r := loc.step(f, i))]
        descriptors.append(np.stack([r.descriptor for r in results]))
    np.testing.assert_allclose(descriptors[1], descriptors[0], atol=1e-5)


def _halve_in_place(model) -> None:
    with torch.no_grad():
        model.encoder.trunk._conv_stem.weight.mul_(0.5)


def _replace_parameter(model) -> None:
    stem = model.encoder.trunk._conv_stem
    stem.weight = torch.nn.Parameter(stem.weight.detach() * 0.5)


def _load_assigned(model) -> None:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["encoder.trunk._conv_stem.weight"] *= 0.5
    model.load_state_dict(state, assign=True)


@pytest.mark.parametrize("change", [_halve_in_place, _replace_parameter, _load_assigned])
@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_changed_weights_are_never_stale(summer, runtime, change):
    """Eager inference caches batch norms folded into the convolutions, ONNX Runtime
    an exported graph: both follow weights written in place or replaced."""
    model = build_model(LITE0_GRID, runtime=runtime)
    frames = _frames(summer, 2)
    before = model.encode_frames(frames)
    change(model)
    after = model.encode_frames(frames)
    assert not torch.allclose(before, after, atol=1e-3)
    reference = build_model(LITE0_GRID)
    reference.load_state_dict(model.state_dict())
    torch.testing.assert_close(after, reference.encode_frames(frames), rtol=0, atol=1e-5)
    if runtime == "onnxruntime":
        assert model.encoder.runtime.exports == 2


def test_training_stays_eager(summer):
    model = build_model(LITE0_GRID, runtime="onnxruntime")
    x = model.preprocess(_frames(summer, 2))
    assert model.encode(x).requires_grad  # autograd: the eager trunk, gradients flow
    assert model.encoder.runtime.exports == 0


def _unsupported(*args, **kwargs):
    raise RuntimeError("Unsupported: ONNX export of operator x\ngraph(...pages...)")


def test_auto_takes_onnxruntime_wherever_it_runs(monkeypatch, caplog, summer):
    assert resolve_runtime("auto", True, torch.device("cpu"), False) == "onnxruntime"
    assert resolve_runtime("auto", False, torch.device("cpu"), False) == "torch"
    assert resolve_runtime("auto", True, torch.device("cuda"), False) == "torch"
    assert resolve_runtime("auto", True, torch.device("cuda"), True) == "torch"
    assert build_model("pixels+avg", runtime="auto").encoder.runtime is None  # no export
    model = build_model(LITE0_GRID, runtime="auto")
    assert model.encoder.runtime is not None
    frames = _frames(summer, 2)
    monkeypatch.setattr(torch.onnx, "export", _unsupported)
    with caplog.at_level(logging.WARNING):
        features = model.encode_frames(frames)
    assert "could not be exported to ONNX (Unsupported" in caplog.text
    assert "runs in torch instead" in caplog.text
    torch.testing.assert_close(features, build_model(LITE0_GRID).encode_frames(frames),
                               rtol=0, atol=1e-6)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert build_model(LITE0_GRID, runtime="auto").encoder.runtime is None  # not installed


def test_refusals_name_the_problem(monkeypatch):
    with pytest.raises(ValueError, match="runs only in torch"):
        build_model("pixels+avg", runtime="onnxruntime")
    with pytest.raises(ValueError, match="runtime must be one of"):
        build_model(LITE0_GRID, runtime="tensorrt")
    with pytest.raises(ValueError, match="runtime 'onnxruntime' runs float32 on the CPU; on "
                                         "cuda in half precision use runtime 'torch'"):
        resolve_runtime("onnxruntime", True, torch.device("cuda"), True)
    model = build_model(LITE0_GRID, runtime="onnxruntime")
    monkeypatch.setattr(torch.onnx, "export", _unsupported)
    with pytest.raises(RuntimeError, match=r"EfficientNetLiteEncoder on input \[3, 64, 128\] could "
                                           r"not be exported to ONNX \(Unsupported: ONNX export of "
                                           r"operator x\); use runtime 'torch'"):
        model.encode_frames([np.zeros((32, 64, 3), np.uint8)])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match="pip install onnxruntime onnx"):
        build_model(LITE0_GRID, runtime="onnxruntime")
