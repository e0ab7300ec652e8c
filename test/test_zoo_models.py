"""Every registered model: streaming on real Nordland frames, save -> load bit for bit,
gradients reach every trainable parameter, float16 gives the float32 descriptors, and
the compatibility check."""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest
import torch
from zoo_configs import (
    ENCODER_FOR,
    SMALL_AGGREGATORS,
    SMALL_ENCODERS,
    TOKEN_ENCODER,
    VECTOR_ENCODER,
    WINDOW,
    config,
    nordland_frames,
)

from seqvpr_core.maps import PlaceMap
from seqvpr_core.models import SequenceModel, list_aggregators, list_encoders, load_model
from seqvpr_core.models.registry import AGGREGATORS
from seqvpr_core.stream.localizer import LocalizerConfig, StreamingLocalizer, WindowConfig


def _input_kind(aggregator: str) -> str:
    agg = SequenceModel(config(TOKEN_ENCODER, "seqvlad"), pretrained=False).aggregator
    if aggregator == "seqvlad":
        return agg.input_kind
    needs_grid = "grid" in inspect.signature(AGGREGATORS[aggregator]).parameters
    return "tokens" if needs_grid else "vector"


def _encoder_for(aggregator: str) -> str:
    if aggregator in ENCODER_FOR:
        return ENCODER_FOR[aggregator][0]
    return TOKEN_ENCODER if _input_kind(aggregator) == "tokens" else VECTOR_ENCODER


# Each aggregator with a compatible encoder, and each encoder with an aggregator it fits.
PAIRS = sorted({(_encoder_for(a), a) for a in list_aggregators()}
               | {(e, "seqvlad") for e in list_encoders()})
SLOW = {("dinov2_vitb14", "seqvlad"), ("dinov2_vits14", "seqvlad")}
PARAMS = [pytest.param(e, a, id=f"{e}+{a}", marks=[pytest.mark.slow] if (e, a) in SLOW else [])
          for e, a in PAIRS]


def test_every_registered_model_has_a_small_test_config():
    assert set(list_encoders()) <= set(SMALL_ENCODERS)
    assert set(list_aggregators()) <= set(SMALL_AGGREGATORS)


def _window(model: SequenceModel) -> WindowConfig:
    if not model.variable_length:
        return WindowConfig.fixed(WINDOW)
    return WindowConfig(max(2, model.min_length), 4)


@pytest.mark.parametrize(("encoder", "aggregator"), PARAMS)
def test_streams_real_frames_and_reloads_bit_for_bit(encoder, aggregator, tmp_path):
    torch.manual_seed(0)
    model = SequenceModel(config(encoder, aggregator), pretrained=False).eval()
    window = _window(model)
    summer, winter = nordland_frames("summer", 0, 6), nordland_frames("winter", 0, 6)
    stamps = [i * 100_000_000 for i in range(6)]

    place_map = PlaceMap(model.descriptor_dim, model={"name": model.name,
                                                      "fingerprint": model.fingerprint()})
    mapping = StreamingLocalizer(model, place_map, LocalizerConfig("mapping", window))
    built = mapping.feed(summer, stamps)
    assert len(place_map) == len(built) > 0
    localizer = StreamingLocalizer(model, place_map, LocalizerConfig("localize", window, top_k=2))
    results = [localizer.step(f, s) for f, s in zip(winter, stamps, strict=True)]
    results = [r for r in results if r is not None]
    assert results and all(r.matches for r in results)
    for r in results:
        assert r.descriptor.shape == (model.descriptor_dim,)
        assert np.isfinite(r.descriptor).all()
        assert abs(np.linalg.norm(r.descriptor) - 1) < 1e-4

    # streaming (each frame encoded once, ring of cached features) == batch recompute
    last = results[-1]
    feats = model.encode_frames(winter[-len(last.frames):])
    with torch.inference_mode():
        batch = model.aggregate(feats[None])[0].numpy()
    np.testing.assert_allclose(last.descriptor, batch, atol=1e-5)

    path = tmp_path / "model.pt"
    model.save(path)
    loaded = load_model(path)
    assert loaded.fingerprint() == model.fingerprint()
    clip = model.preprocess(winter[:WINDOW])[None]
    with torch.inference_mode():
        assert torch.equal(model(clip), loaded(clip))
    again = StreamingLocalizer(loaded, place_map, LocalizerConfig("localize", window, top_k=2))
    redo = [r for r in (again.step(f, s) for f, s in zip(winter, stamps, strict=True)) if r]
    assert all(np.array_equal(a.descriptor, b.descriptor)
               for a, b in zip(results, redo, strict=True))


@pytest.mark.parametrize(("encoder", "aggregator"), PARAMS)
def test_gradient_reaches_every_trainable_parameter(encoder, aggregator):
    torch.manual_seed(0)
    model = SequenceModel(config(encoder, aggregator), pretrained=False).train()
    with torch.no_grad():  # off a zero-initialised gate (TimeSformer's temporal_fc), which
        for p in model.parameters():  # blocks gradients at step 0 by design
            p.add_(1e-3 * torch.randn_like(p))
    t = WINDOW if not model.variable_length else max(2, model.min_length)
    clips = torch.randn(2, t, 3, *model.encoder.preprocess.size)
    out = model(clips)
    (out * torch.randn_like(out)).sum().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable or encoder == "pixels"
    dead = [n for n, p in trainable if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"no gradient reaches {dead}"


@pytest.mark.parametrize(("encoder", "aggregator"), PARAMS)
def test_half_precision_gives_the_float32_descriptors(encoder, aggregator):
    """What ``--half`` runs on a GPU, here on the CPU's float16 kernels: no NaN from
    float16 underflow (an empty NetVLAD cluster, GeM of weak activations) and the
    float32 model's descriptors up to float16 rounding."""
    torch.manual_seed(0)
    full = SequenceModel(config(encoder, aggregator), pretrained=False).eval()
    half = copy.deepcopy(full).half()
    frames = nordland_frames("summer", 0, 2 * WINDOW)
    with torch.inference_mode():
        out = [m.aggregate(m.encode_frames(frames).unflatten(0, (2, WINDOW)))
               for m in (full, half)]
    assert out[1].dtype == torch.float16 and torch.isfinite(out[1]).all()
    torch.testing.assert_close(out[1].float(), out[0], rtol=0, atol=2e-3)


def test_incompatible_encoder_and_aggregator_are_refused_clearly():
    with pytest.raises(ValueError, match="needs one global vector per frame.*output='seqpool'"):
        SequenceModel(config(TOKEN_ENCODER, "seqgem"), pretrained=False)
    with pytest.raises(ValueError, match="needs a grid of tokens"):
        SequenceModel(config(VECTOR_ENCODER, "stformer"), pretrained=False)


def test_pca_stage_is_learned_stored_and_reloaded(tmp_path):
    torch.manual_seed(0)
    cfg = config(TOKEN_ENCODER, "seqvlad") | {"pca": {"dim": 8, "whiten": True}}
    model = SequenceModel(cfg, pretrained=False).eval()
    assert model.descriptor_dim == 8
    feats = torch.randn(40, 2, *model.frame_shape)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.aggregate(feats[:2])
    with torch.inference_mode():
        raw = model.aggregate_raw(feats)
    model.fit_pca(raw)
    with torch.inference_mode():
        out = model.aggregate(feats)
    assert out.shape == (40, 8)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(40))
    # whitened projections of the training descriptors are decorrelated
    pca = model.pca
    proj = (raw - pca.mean) @ pca.components.T * pca.scale
    cov = proj.T @ proj / (len(proj) - 1)
    torch.testing.assert_close(cov, torch.eye(8), atol=1e-3, rtol=0)
    model.save(tmp_path / "pca.pt")
    loaded = load_model(tmp_path / "pca.pt")
    with torch.inference_mode():
        assert torch.equal(loaded.aggregate(feats), out)


@pytest.mark.parametrize("name", ["seqvlad_cct384", "stformer_cct384", "adapt_stformer_cct384"])
def test_seed_configs_build_the_authors_models(name):
    """The seed systems' configs name options the models take (built without weights)."""
    from pathlib import Path

    from seqvpr_core.train import load_config

    root = Path(__file__).resolve().parents[1]
    config = load_config(root / "config" / "train" / f"{name}.yaml").model
    config["encoder"]["pretrained"] = False  # no ImageNet CCT file here
    model = SequenceModel(config, pretrained=False)
    trained = {int(n.split(".")[2]) for n, p in model.encoder.named_parameters()
               if p.requires_grad and n.startswith("classifier.blocks.")}
    blocks = len(model.encoder.classifier.blocks)
    assert trained == set(range(0 if name.startswith("stformer") else 2, blocks))
    assert model.descriptor_dim == 64 * 384
