"""Authors' release files become ordinary seqvpr models: every release format's layout
(wrappers, prefixes, numpy scalars), what the keys determine, the authors' training
settings, and the converted model through the CLI's map and localization path."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
import yaml
from conftest import copy_frames

from seqvpr_core.convert import CONVERTERS, convert
from seqvpr_core.maps import PlaceMap
from seqvpr_core.models import SequenceModel, load_model

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"
JIST = REFERENCE / "jist_resnet18_seqgem" / "checkpoint.pth"
NUMPY_RECALLS = {"recalls": np.array([0.5, 0.7, 0.8]), "best_r5": np.float64(0.7)}


def _frames(n: int, size=(64, 80)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (n, *size, 3), dtype=np.uint8)


def _trainable_trunk(model: SequenceModel) -> set[str]:
    return {n.split(".")[1] for n, p in model.encoder.named_parameters()
            if p.requires_grad and n.startswith("backbone.")}


def _resnet18_children_state(cut: int) -> dict[str, torch.Tensor]:
    """torchvision ResNet-18 children[:cut] as nn.Sequential indices (the authors' trunks)."""
    torch.manual_seed(3)
    trunk = torch.nn.Sequential(*list(torchvision.models.resnet18(weights=None).children())[:cut])
    return trunk.eval(), trunk.state_dict()


def test_jist_file_keeps_its_seqgem_p_and_the_authors_settings():
    model = convert("jist", JIST)
    assert model.aggregator.p.item() == 2.375  # the file's, not SeqGeM's initial 3
    assert not model.aggregator.normalize and model.metric == "l2"
    assert model.encoder.preprocess.size == (480, 640) and model.fixed_length is None
    assert _trainable_trunk(model) == {"7"}  # JIST trains layer4 only (+ GeM p, FC, SeqGeM p)
    assert {"pretrained", "weights"}.isdisjoint(model.config["encoder"])
    with torch.inference_mode():
        raw = model.aggregate(model.encode_frames(_frames(3))[None])
    assert 0.05 < raw.norm().item() < 0.99  # raw SeqGeM of unit frame vectors
    assert PlaceMap.for_model(model).metric == "l2"


def test_jist_seed_config_loads_a_jist_resnet18_512_file():
    """config/train/jist_resnet18.yaml keeps layer4 and the 512-d FC: a JIST file fits."""
    config = yaml.safe_load((REPO / "config" / "train" / "jist_resnet18.yaml").read_text())
    encoder = {**config["model"]["encoder"], "weights": str(JIST), "image_size": [64, 80]}
    seed = SequenceModel({**config["model"], "encoder": encoder})
    converted = convert("jist", JIST, {"encoder": {"image_size": [64, 80]}})
    for key, value in converted.encoder.state_dict().items():
        torch.testing.assert_close(seed.encoder.state_dict()[key], value)
    assert _trainable_trunk(seed) == {"7"} and seed.metric == "l2"
    assert seed.aggregator.p.item() == 3.0  # training starts from SeqGeM's init, as JIST


def test_cosplace_file_is_a_single_frame_model_until_config_names_an_aggregator(tmp_path):
    state = torch.load(JIST, weights_only=True)
    cosplace = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    torch.save(cosplace, tmp_path / "ResNet18_512_cosplace.pth")
    single = convert("cosplace", tmp_path / "ResNet18_512_cosplace.pth")
    assert single.name == "resnet18+none" and single.metric == "ip"
    assert single.encoder.preprocess.size == (512, 512) and _trainable_trunk(single) == {"6", "7"}
    seq = convert("cosplace", tmp_path / "ResNet18_512_cosplace.pth",
                  {"aggregator": {"name": "seqgem"}, "encoder": {"image_size": [64, 80]}})
    jist = convert("jist", JIST, {"encoder": {"image_size": [64, 80]}})
    frames = _frames(2)
    torch.testing.assert_close(seq.encode_frames(frames), jist.encode_frames(frames))
    with pytest.raises(ValueError, match="unexpected keys"):
        convert("cosplace", JIST)  # a JIST file is not a bare CosPlace network


def test_netvlad_release_with_its_vgg16_encoder(tmp_path):
    """Nanne's --nGPU > 1 layout (encoder.module.*, pool.module.*), numpy recalls, vladv2."""
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    trunk = torch.nn.Sequential(*list(features.children())[:29]).eval()
    pool = {"centroids": torch.rand(8, 512), "conv.weight": torch.randn(8, 512, 1, 1),
            "conv.bias": torch.randn(8)}
    state = {f"encoder.module.{k}": v for k, v in trunk.state_dict().items()} | {
        f"pool.module.{k}": v for k, v in pool.items()}
    torch.save({"epoch": 3, "state_dict": state, "recalls": {1: np.float64(0.6)},
                "best_score": np.float64(0.6), "optimizer": {}, "parallel": True},
               tmp_path / "model_best.pth.tar")
    model = convert("netvlad", tmp_path / "model_best.pth.tar",
                    {"encoder": {"image_size": [64, 96]}})
    assert model.name == "vgg16+none" and model.descriptor_dim == 8 * 512
    assert model.config["encoder"]["pool_options"] == {"clusters": 8, "init": "vladv2"}
    x = model.preprocess(_frames(2, (64, 96)))
    with torch.inference_mode():
        f = F.normalize(trunk(x), dim=1).flatten(2)  # the authors' forward, vectorised
        a = F.conv2d(F.normalize(trunk(x), dim=1), pool["conv.weight"],
                     pool["conv.bias"]).flatten(2).softmax(1)  # [N, K, HW]
        vlad = torch.einsum("nkp,ncp->nkc", a, f) - a.sum(-1, keepdim=True) * pool["centroids"]
        expected = F.normalize(F.normalize(vlad, dim=2).flatten(1), dim=1)
        torch.testing.assert_close(model.encode(x), expected, atol=1e-5, rtol=1e-4)
    model.save(tmp_path / "netvlad.pt")
    torch.testing.assert_close(load_model(tmp_path / "netvlad.pt").encode(x), model.encode(x))
    with pytest.raises(ValueError, match="only the NetVLAD layer"):
        convert("netvlad", REFERENCE / "netvlad_v1" / "checkpoint.pth")


def test_vg_transformers_resnet_fc_release(tmp_path):
    """TVGNet r18l3 + GeM + FC: raw GeM frames stacked in time order, then the FC, raw."""
    trunk, trunk_state = _resnet18_children_state(-3)
    fc = torch.nn.Linear(3 * 256, 32)
    state = ({f"module.encoder.{k}": v for k, v in trunk_state.items()}
             | {"module.pooling.1.p": torch.tensor([2.5])}
             | {f"module.aggregator.1.{k}": v for k, v in fc.state_dict().items()})
    torch.save({"epoch_num": 2, "model_state_dict": state, "optimizer_state_dict": {},
                "not_improved_num": 0, **NUMPY_RECALLS}, tmp_path / "best_model.pth")
    model = convert("vg-transformers", tmp_path / "best_model.pth",
                    {"encoder": {"image_size": [64, 64]}})
    assert model.name == "resnet18+fc" and model.fixed_length == 3 and model.metric == "l2"
    assert _trainable_trunk(model) == {"6"}  # --freeze_layer layer3: layer3 trains
    x = model.preprocess(_frames(6, (64, 64)))
    with torch.inference_mode():
        gem = F.normalize(trunk(x), dim=1).clamp(min=1e-6).pow(2.5).mean((-2, -1)).pow(0.4)
        expected = fc(gem.view(2, 3 * 256))
        torch.testing.assert_close(model(x.view(2, 3, *x.shape[1:])), expected)
    del state["module.aggregator.1.weight"], state["module.aggregator.1.bias"]
    torch.save({"model_state_dict": state}, tmp_path / "cat.pth")
    with pytest.raises(ValueError, match="CAT stores no window length"):
        convert("vg-transformers", tmp_path / "cat.pth")
    cat = convert("vg-transformers", tmp_path / "cat.pth", {"aggregator": {"length": 3}})
    assert cat.name == "resnet18+cat" and cat.descriptor_dim == 3 * 256 and cat.metric == "l2"


def test_vg_transformers_seqvlad_on_a_cnn_takes_the_map_as_tokens(tmp_path):
    _, trunk_state = _resnet18_children_state(-3)
    fixture = torch.load(REFERENCE / "vgt_seqvlad_cnn" / "checkpoint.pth", weights_only=True)
    state = {f"module.encoder.{k}": v for k, v in trunk_state.items()} | fixture[
        "model_state_dict"]
    torch.save({**fixture, "model_state_dict": state}, tmp_path / "last_model.pth")
    model = convert("vg-transformers", tmp_path / "last_model.pth",
                    {"encoder": {"image_size": [64, 64]}})
    assert model.name == "resnet18+seqvlad" and model.variable_length and model.metric == "ip"
    assert model.aggregator.vlad.assign.bias is None
    with torch.inference_mode():
        d = model.aggregate(model.encode_frames(_frames(4, (64, 64)))[None])
    assert d.shape == (1, 64 * 256) and abs(d.norm().item() - 1) < 1e-5


@pytest.mark.parametrize("depth", [2, 0])  # mix_depth=0: the authors' MixVPR without mixers
def test_mixvpr_release_reads_every_size_from_the_weights(depth):
    """A VPRModel of resnet18 cut after layer3 (256 channels, 4x4 grid at 64x64)."""
    torch.manual_seed(4)
    tv = torchvision.models.resnet18(weights=None).eval()
    backbone = {f"backbone.model.{k}": v for k, v in tv.state_dict().items()
                if not k.startswith(("fc.", "layer4."))}
    hw, rows, out_c = 16, 2, 8
    agg = {"channel_proj.weight": torch.randn(out_c, 256) / 16, "channel_proj.bias": torch.zeros(
        out_c), "row_proj.weight": torch.randn(rows, hw), "row_proj.bias": torch.randn(rows)}
    for i in range(depth):
        agg |= {f"mix.{i}.mix.0.weight": torch.ones(hw), f"mix.{i}.mix.0.bias": torch.zeros(hw),
                f"mix.{i}.mix.1.weight": torch.randn(2 * hw, hw) / 4,
                f"mix.{i}.mix.1.bias": torch.zeros(2 * hw),
                f"mix.{i}.mix.3.weight": torch.randn(hw, 2 * hw) / 4,
                f"mix.{i}.mix.3.bias": torch.zeros(hw)}
    release = {"state_dict": backbone | {f"aggregator.{k}": v for k, v in agg.items()},
               "epoch": 1}  # a Lightning training file
    model = CONVERTERS["mixvpr"](release, {}).eval()
    assert model.encoder.preprocess.size == (64, 64) and model.descriptor_dim == rows * out_c
    x = model.preprocess(_frames(2, (64, 64)))
    with torch.inference_mode():
        f = tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))).flatten(2)
        for i in range(depth):
            h = F.layer_norm(f, (hw,), agg[f"mix.{i}.mix.0.weight"], agg[f"mix.{i}.mix.0.bias"])
            h = F.linear(F.relu(F.linear(h, agg[f"mix.{i}.mix.1.weight"],
                                         agg[f"mix.{i}.mix.1.bias"])),
                         agg[f"mix.{i}.mix.3.weight"], agg[f"mix.{i}.mix.3.bias"])
            f = f + h
        f = F.linear(f.permute(0, 2, 1), agg["channel_proj.weight"], agg["channel_proj.bias"])
        f = F.linear(f.permute(0, 2, 1), agg["row_proj.weight"], agg["row_proj.bias"])
        torch.testing.assert_close(model.encode(x), F.normalize(f.flatten(1), dim=-1),
                                   atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="only the MixVPR aggregator"):
        convert("mixvpr", REFERENCE / "mixvpr_aggregator" / "checkpoint.pth")


def test_dinov2_release_reads_its_depth_and_needs_a_head_for_tokens():
    path = REFERENCE / "dinov2_vits14" / "checkpoint.pth"
    model = convert("dinov2", path)
    assert model.name == "dinov2_vits14+none" and model.config["encoder"]["layers"] == 1
    assert model.encode_frames(_frames(1, (224, 224))).shape == (1, 384)
    with pytest.raises(ValueError, match="token aggregator"):
        convert("dinov2", path, {"encoder": {"output": "tokens"}})
    tokens = convert("dinov2", path, {"encoder": {"output": "tokens", "image_size": [56, 84]},
                                      "aggregator": {"name": "seqvlad", "clusters": 4}})
    assert tokens.frame_shape == (1 + 4 * 6, 384)
    with pytest.raises(ValueError, match="not a DINOv2"):
        convert("dinov2", JIST)



def test_dinov2_release_reads_its_position_grid(tmp_path):
    """A model built with another img_size has another position table (224: 16x16); the
    converter reads its side from pos_embed instead of assuming the released 37x37."""
    state = torch.load(REFERENCE / "dinov2_vits14" / "checkpoint.pth", weights_only=True)
    grid, dim = 16, state["cls_token"].shape[-1]
    constant = torch.randn(dim)
    table = torch.cat([torch.randn(1, dim), constant.expand(grid * grid, dim)])[None]
    path = tmp_path / "dinov2_img224.pth"
    torch.save(state | {"pos_embed": table}, path)
    model = convert("dinov2", path, {"encoder": {"image_size": [grid * 14, grid * 14]}})
    assert model.config["encoder"]["pos_grid"] == grid
    assert model.encode_frames(_frames(1, (grid * 14, grid * 14))).shape == (1, dim)
    with torch.no_grad():
        # at its own grid the table is used as stored; elsewhere it is resized from 16x16
        assert torch.equal(model.encoder.position_embedding(grid, grid), table)
        resized = model.encoder.position_embedding(5, 7)
    assert resized.shape == (1, 1 + 5 * 7, dim) and torch.equal(resized[0, 0], table[0, 0])
    torch.testing.assert_close(resized[0, 1:], constant.expand(5 * 7, dim))
    torch.save(state | {"pos_embed": torch.randn(1, 1 + grid * (grid + 1), dim)}, path)
    with pytest.raises(ValueError, match="not a square grid"):
        convert("dinov2", path)

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seqvpr_core.cli.main", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # three CLI processes
def test_converted_jist_file_builds_a_map_and_localizes_like_a_native_checkpoint(
        tmp_path, nordland):
    """seqvpr convert --from jist, then build-map and localize as with any checkpoint:
    the map searches the raw SeqGeM vectors with L2, so every window finds itself."""
    frames = copy_frames(nordland / "summer", tmp_path / "summer", 24)
    config = tmp_path / "small.yaml"
    config.write_text("encoder: {image_size: [64, 128]}\n")  # small frames, quick on a CPU
    model_path = tmp_path / "jist.pt"
    done = _cli("convert", "--from", "jist", str(JIST), "--config", str(config),
                "--out", str(model_path))
    assert done.returncode == 0, done.stderr
    assert "512-d descriptors, any window length" in done.stdout
    done = _cli("build-map", "--images", str(frames), "--model", str(model_path), "--window", "5",
                "--out", str(tmp_path / "map"))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "map" / "manifest.json").read_text())
    assert manifest["metric"] == "l2" and manifest["count"] == 20
    assert manifest["model"]["fingerprint"] == load_model(model_path).fingerprint()
    out = tmp_path / "matches.csv"
    done = _cli("localize", "--map", str(tmp_path / "map"), "--model", str(model_path),
                "--images", str(frames), "--out", str(out), "--top-k", "2",
                "--consistency", "2")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 20
    assert all(r["match1_index"] == r["query_index"] for r in rows)
    assert all(-1e-6 <= float(r["match1_score"]) <= 0 < -float(r["match2_score"]) for r in rows)
    loops = list(csv.DictReader(out.with_suffix(".loops.csv").open()))
    assert loops  # the gate takes l2 scores (<= 0): no threshold by default
