"""The taxonomy's remaining rows (SeqVLAD, Mereu et al., RA-L 2022, Table II): TimeSformer
and R(2+1)D early fusion, the ViT frame encoder and learning-free delta descriptors,
each checked for its defining property and, where torchvision has the network, against
torchvision's own forward on the same weights. Streaming == recompute, save/load, float16
and gradient flow are checked for them in test_zoo_models like for every registered model."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torchvision
from conftest import copy_frames
from torch.nn.functional import normalize
from torchvision.models.vision_transformer import VisionTransformer

from seqvpr_core.cli.main import main
from seqvpr_core.models import SequenceModel, create_aggregator, create_encoder, load_model

C, GRID = 32, (3, 4)
N = GRID[0] * GRID[1]
TINY_VIT = {"image_size": 32, "patch_size": 16, "layers": 2, "heads": 2, "hidden_dim": C,
            "mlp_dim": 64}


def _timesformer(frames: int = 4, depth: int = 1, trained: bool = True):
    torch.manual_seed(0)
    agg = create_aggregator("timesformer", in_dim=C, grid=GRID, frames=frames, depth=depth,
                            heads=4).eval()
    if trained:  # off the authors' init (zero temporal_fc, zero time table)
        with torch.no_grad():
            for p in agg.parameters():
                p.add_(0.1 * torch.randn_like(p))
    return agg


@pytest.mark.parametrize(("name", "kw", "frame"), [
    ("timesformer", {"in_dim": C, "grid": GRID, "frames": 4, "depth": 1, "heads": 4}, (N, C)),
    ("r2plus1d", {"in_dim": 3, "grid": (8, 8), "layers": 1}, (64, 3)),
    ("delta", {}, (C,)),
])
def test_any_window_length_gives_one_unit_descriptor_of_fixed_size(name, kw, frame):
    torch.manual_seed(0)
    agg = create_aggregator(name, **kw).eval()
    assert agg.variable_length
    for t in (1, 2, 3, 5, 10):
        with torch.no_grad():
            out = agg(torch.rand(2, t, *frame))
        assert out.shape == (2, agg.out_dim(frame[-1]))
        torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    assert agg.fusion == ("late" if name == "delta" else "early")


def test_timesformer_temporal_attention_mixes_each_patch_only_across_frames():
    block = _timesformer().blocks[0]
    x = torch.randn(2, N, 5, C)  # [B, patch, frame, C]
    moved = x.clone()
    moved[0, 7, 2] += torch.randn(C)  # not a constant: LayerNorm would remove it
    with torch.no_grad():
        diff = (block.temporal(moved) - block.temporal(x)).abs().amax(-1)  # [B, N, T]
    assert diff[0, 7].min() > 0  # patch 7 changes in every frame
    others = torch.ones_like(diff, dtype=torch.bool)
    others[0, 7] = False
    assert diff[others].max() == 0  # no other patch position, no other clip


def test_timesformer_spatial_attention_mixes_patches_only_within_a_frame_and_with_cls():
    block = _timesformer().blocks[0]
    x, cls = torch.randn(2, N, 5, C), torch.randn(2, C)
    moved = x.clone()
    moved[0, 7, 2] += torch.randn(C)
    with torch.no_grad():
        cls_a, res_a = block.spatial(cls, x)
        cls_b, res_b = block.spatial(cls, moved)
    diff = (res_b - res_a).abs().amax(-1)
    assert diff[0, :, 2].min() > 0  # every patch of frame 2
    others = torch.ones_like(diff, dtype=torch.bool)
    others[0, :, 2] = False
    assert diff[others].max() == 0
    assert (cls_b[0] - cls_a[0]).abs().max() > 0 and torch.equal(cls_b[1], cls_a[1])


def test_timesformer_cls_descriptor_sees_every_patch_of_every_frame():
    agg = _timesformer(depth=1)
    x = torch.randn(1, 3, N, C)
    with torch.no_grad():
        base = agg(x)
        for t in range(3):
            for p in (0, 5, N - 1):
                moved = x.clone()
                moved[0, t, p] += torch.randn(C)
                assert not torch.allclose(agg(moved), base), (t, p)


def test_timesformer_time_table_is_resized_by_nearest_neighbour_like_the_authors():
    agg = _timesformer(frames=4)
    table = agg.time_embed[0]
    torch.testing.assert_close(agg.time_embedding(4), table, rtol=0, atol=0)
    for t in (1, 2, 3, 6, 9):  # F.interpolate(mode="nearest"): row floor(i * 4 / t)
        rows = [int(np.floor(i * 4 / t)) for i in range(t)]
        torch.testing.assert_close(agg.time_embedding(t), table[rows], rtol=0, atol=0)


def test_timesformer_frame_order_enters_only_through_the_time_table():
    x = torch.randn(2, 4, N, C)
    fresh = _timesformer(trained=False)  # authors' init: time table 0, temporal_fc 0
    with torch.no_grad():
        torch.testing.assert_close(fresh(x.flip(1)), fresh(x), atol=1e-6, rtol=0)
        trained = _timesformer()
        assert not torch.allclose(trained(x.flip(1)), trained(x), atol=1e-4)
        trained.time_embed.zero_()  # no time position: temporal attention is order-free
        torch.testing.assert_close(trained(x.flip(1)), trained(x), atol=1e-5, rtol=0)


def test_timesformer_runs_on_vit_patches_and_drops_a_token_encoders_cls():
    enc = create_encoder("vit", output="patches", **TINY_VIT)
    assert enc.out_shape == (4, C) and enc.grid == (2, 2) and enc.prefix_tokens == 0
    assert set(enc.state_dict()) == {"conv_proj.weight", "conv_proj.bias"}
    agg = create_aggregator("timesformer", in_dim=C, grid=(2, 2), prefix_tokens=1, depth=1,
                            heads=4).eval()
    x = torch.randn(2, 3, 5, C)
    with torch.no_grad():
        out = agg(x)
        x[:, :, 0] += 5.0  # the prefix (CLS) token is not a patch: ignored
        torch.testing.assert_close(agg(x), out, rtol=0, atol=0)


def _kinetics_like_r2plus1d() -> torch.nn.Module:
    """torchvision's R(2+1)D-18 with non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(1)
    tv = torchvision.models.video.r2plus1d_18(weights=None)
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.normal_(0, 0.1)
    return tv.eval()


def test_r2plus1d_loads_torchvision_weights_and_equals_its_forward(tmp_path):
    tv = _kinetics_like_r2plus1d()
    path = tmp_path / "r2plus1d_18.pth"
    torch.save(tv.state_dict(), path)
    cfg = {"encoder": {"name": "rgb", "image_size": (32, 32)},
           "aggregator": {"name": "r2plus1d", "weights": str(path)}}
    model = SequenceModel(cfg).eval()
    clips = torch.randn(2, 4, 3, 32, 32)
    tv.fc = torch.nn.Identity()
    with torch.no_grad():
        ours = model(clips)
        theirs = normalize(tv(clips.transpose(1, 2)), dim=1)  # [B, 3, T, H, W]
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(model(clips.flip(1)), ours, atol=1e-3)  # order matters
        # cut after layer 2: the file's later stages and classifier are left unused
        cut = SequenceModel(cfg | {"aggregator": cfg["aggregator"] | {"layers": 2}}).eval()
        clip = clips.transpose(1, 2)
        mid = normalize(tv.layer2(tv.layer1(tv.stem(clip))).mean((2, 3, 4)), dim=1)
        torch.testing.assert_close(cut(clips), mid, atol=1e-5, rtol=1e-4)
    # the checkpoint carries the weights: it loads without the file it was built from
    model.save(tmp_path / "model.pt")
    path.unlink()
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "model.pt")(clips), ours)


def test_r2plus1d_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights="):
        create_aggregator("r2plus1d", in_dim=3, grid=(8, 8), pretrained=True)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        create_aggregator("r2plus1d", in_dim=3, grid=(8, 8), pretrained=True,
                          weights=str(tmp_path / "nowhere.pth"))
    with pytest.raises(ValueError, match="encoder 'rgb'"):
        SequenceModel({"encoder": {"name": "cct224", "image_size": 64, "layers": 1},
                       "aggregator": "r2plus1d"}, pretrained=False)


def _tiny_torchvision_vit(image_size: int = 32) -> VisionTransformer:
    torch.manual_seed(2)
    tv = VisionTransformer(image_size, 16, 2, 2, C, 64, num_classes=10)
    with torch.no_grad():  # torchvision zero-initialises the position table and class token
        tv.encoder.pos_embedding.normal_(0, 0.5)
        tv.class_token.normal_(0, 0.5)
    return tv.eval()


def test_vit_loads_torchvision_layout_and_equals_its_forward(tmp_path):
    tv = _tiny_torchvision_vit()
    torch.save(tv.state_dict(), tmp_path / "vit.pth")
    x = torch.randn(2, 3, 32, 32)
    seen = {}
    tv.encoder.register_forward_hook(lambda m, i, o: seen.update(tokens=o))
    tv.heads = torch.nn.Identity()  # torchvision's pre-classifier representation: CLS
    with torch.no_grad():
        cls = tv(x)
        outputs = {out: create_encoder("vit", pretrained=True, weights=str(tmp_path / "vit.pth"),
                                       output=out, **TINY_VIT).eval()(x)
                   for out in ("cls", "tokens", "patches")}
        patches = tv.conv_proj(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(outputs["cls"], normalize(cls, dim=1))
    torch.testing.assert_close(outputs["tokens"], seen["tokens"])
    torch.testing.assert_close(outputs["patches"], patches)


def test_vit_b16_parameters_are_torchvisions_key_for_key():
    with torch.device("meta"):
        theirs = torchvision.models.vit_b_16(weights=None).state_dict()
        ours = create_encoder("vit").state_dict()
    expected = {k: v.shape for k, v in theirs.items() if not k.startswith("heads.")}
    assert {k: v.shape for k, v in ours.items()} == expected
    assert "encoder.layers.encoder_layer_11.self_attention.in_proj_weight" in ours


def test_vit_position_table_of_another_image_size_is_resized_on_load(tmp_path):
    tv = _tiny_torchvision_vit(image_size=64)  # 4x4 patches + CLS
    torch.save(tv.state_dict(), tmp_path / "vit64.pth")
    enc = create_encoder("vit", pretrained=True, weights=str(tmp_path / "vit64.pth"),
                         **TINY_VIT)  # 2x2 patches + CLS
    pos = enc.encoder.pos_embedding
    assert pos.shape == (1, 5, C)
    torch.testing.assert_close(pos[:, 0], tv.encoder.pos_embedding[:, 0])  # CLS row kept
    torch.testing.assert_close(enc.encoder.layers[1].mlp[0].weight,
                               tv.encoder.layers[1].mlp[0].weight)


def test_vit_options_and_errors(tmp_path):
    enc = create_encoder("vit", trainable_layers=1, **TINY_VIT)
    trainable = {n.split(".")[2] for n, p in enc.named_parameters()
                 if p.requires_grad and n.startswith("encoder.layers.")}
    assert trainable == {"encoder_layer_1"}
    assert not enc.conv_proj.weight.requires_grad and enc.encoder.ln.weight.requires_grad
    assert create_encoder("vit", output="tokens", **TINY_VIT).out_shape == (5, C)
    with pytest.raises(FileNotFoundError, match="weights="):
        create_encoder("vit", pretrained=True)
    with pytest.raises(ValueError, match="divisible by patch_size"):
        create_encoder("vit", image_size=40)
    torch.save({"conv_proj.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="missing"):
        create_encoder("vit", pretrained=True, weights=str(tmp_path / "other.pth"))


def _delta(x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return create_aggregator("delta")(x)


@pytest.mark.parametrize("length", [2, 4, 8, 16])
def test_delta_is_the_authors_convolution_for_even_lengths(length):
    """Garg et al.'s kernel (oravus/DeltaDescriptors src/ops.py, op "delta"), applied by
    np.convolve to each dimension, at the one position where it covers the window."""
    x = torch.rand(1, length, C, dtype=torch.float64)
    kernel = -np.ones(length) / (length / 2.0)
    kernel[:length // 2] *= -1
    theirs = np.array([np.convolve(x[0, :, d].numpy(), kernel, "valid")[0] for d in range(C)])
    torch.testing.assert_close(_delta(x)[0], normalize(torch.from_numpy(theirs), dim=0))


def test_delta_cancels_a_constant_offset_and_reversing_negates_it():
    x = torch.rand(3, 6, C)
    offset = 5 * torch.rand(3, 1, C)  # e.g. the same condition change on every frame
    torch.testing.assert_close(_delta(x + offset), _delta(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(_delta(x.flip(1)), -_delta(x))


def test_delta_odd_windows_skip_the_middle_frame_and_zero_change_falls_back_to_the_frame():
    x = torch.rand(2, 5, C)
    moved = x.clone()
    moved[:, 2] += 3.0
    torch.testing.assert_close(_delta(moved), _delta(x))
    expected = normalize(x[:, 3:].mean(1) - x[:, :2].mean(1), dim=1)
    torch.testing.assert_close(_delta(x), expected)
    still = x[:, :1].expand(2, 4, C)  # a robot standing still: no change to describe
    torch.testing.assert_close(_delta(still), normalize(x[:, 0], dim=1))
    torch.testing.assert_close(_delta(x[:, :1]), normalize(x[:, 0], dim=1))


def test_eval_delta_baseline_is_the_delta_aggregator_on_the_same_features(tmp_path, nordland,
                                                                          capsys):
    db = copy_frames(nordland / "summer", tmp_path / "summer", 40)
    q = copy_frames(nordland / "winter", tmp_path / "winter", 40)
    common = ["--db", str(db), "--query", str(q), "--window", "6", "--tolerance", "1",
              "--examples", "0"]
    assert main(["eval", *common, "--model", "pixels+cat", "--delta",
                 "--json", str(tmp_path / "cat.json")]) == 0
    assert "delta descriptors" in capsys.readouterr().out
    report = json.loads((tmp_path / "cat.json").read_text())
    assert report["delta_queries"] == report["queries"]
    assert 0.0 <= report["pr"]["current"]["delta"]["auc"] <= 1.0
    assert main(["eval", *common, "--model", "pixels+delta", "--no-single-frame",
                 "--json", str(tmp_path / "delta.json")]) == 0
    assert json.loads((tmp_path / "delta.json").read_text())["recall"] == report["delta_recall"]


def test_models_lists_the_fusion_of_every_aggregator(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("\naggregator"):].strip().split("\n\n")[0].splitlines()[1:]
    fusion = {r.split()[0]: re.search(r" (late|intermediate|early \*) ", f"{r} ").group(1)
              for r in table}
    assert fusion["timesformer"] == fusion["r2plus1d"] == "early *"
    assert fusion["delta"] == fusion["cat"] == fusion["seqgem"] == "late"
    assert fusion["seqvlad"] == "intermediate"
    assert "* Early fusion cannot" in out
    encoders = {line.split()[0] for line in out[:out.index("\naggregator")].splitlines() if line}
    assert {"vit", "rgb"} <= encoders
