"""Frame encoders of the zoo: weight files in the layouts people actually have
(torchvision, CosPlace, JIST, official DINOv2), clear errors, token layouts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqvpr_core.models import create_encoder, list_encoders
from seqvpr_core.models.encoders.dinov2 import PRETRAIN_GRID

WEIGHTED = ["resnet18", "resnet50", "vgg16", "cct224", "cct384", "dinov2_vits14",
            "dinov2_vitb14"]


@pytest.mark.parametrize("name", WEIGHTED)
def test_pretrained_without_a_weight_file_is_a_clear_error(name, tmp_path):
    assert name in list_encoders()
    with pytest.raises(FileNotFoundError, match="weights="):
        create_encoder(name, pretrained=True)
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        create_encoder(name, pretrained=True, weights=str(missing))


def _resnet18_torchvision_state() -> dict[str, torch.Tensor]:
    import torchvision
    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None).state_dict()


def _cosplace_state(tv: dict[str, torch.Tensor], fc_dim: int) -> dict[str, torch.Tensor]:
    """CosPlace's GeoLocalizationNet: backbone = children()[:-2] as a Sequential,
    aggregation = Sequential(L2Norm, GeM(p of shape [1]), Flatten, Linear, L2Norm)."""
    index = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}
    state = {}
    for key, value in tv.items():
        head = key.split(".")[0]
        if head in index:
            state[f"backbone.{index[head]}{key[len(head):]}"] = value
    state["aggregation.1.p"] = torch.full((1,), 2.5)
    state["aggregation.3.weight"] = torch.randn(fc_dim, 512)
    state["aggregation.3.bias"] = torch.randn(fc_dim)
    return state


def _same_output(a: nn.Module, b: nn.Module, size=(64, 64)) -> bool:
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x), atol=1e-6)


def test_resnet_loads_torchvision_cosplace_and_jist_layouts(tmp_path):
    tv = _resnet18_torchvision_state()
    torch.save(tv, tmp_path / "tv.pth")
    enc = create_encoder("resnet18", pretrained=True, weights=str(tmp_path / "tv.pth"),
                         image_size=(64, 64))
    torch.testing.assert_close(enc.backbone[7][1].conv2.weight, tv["layer4.1.conv2.weight"])
    torch.testing.assert_close(enc.backbone[1].running_var, tv["bn1.running_var"])

    cos = _cosplace_state(tv, fc_dim=128)
    torch.save(cos, tmp_path / "cosplace.pth")
    a = create_encoder("resnet18", pretrained=True, weights=str(tmp_path / "cosplace.pth"),
                       fc_dim=128, image_size=(64, 64))
    assert a.dim == 128 and float(a.gem.p.detach()) == 2.5
    torch.testing.assert_close(a.fc.weight, cos["aggregation.3.weight"])

    # JIST wraps the CosPlace network as `model.` and adds its SeqGeM; DataParallel adds `module.`
    jist = {f"module.model.{k}": v for k, v in cos.items()} | {"module.seq_gem.p": torch.ones(1)}
    torch.save({"model_state_dict": jist, "epoch": 3}, tmp_path / "jist.pth")
    b = create_encoder("resnet18", pretrained=True, weights=str(tmp_path / "jist.pth"),
                       fc_dim=128, image_size=(64, 64))
    assert _same_output(a, b)

    # the layer-3 crop simply leaves layer4 of the file unused
    c = create_encoder("resnet18", pretrained=True, weights=str(tmp_path / "cosplace.pth"),
                       layer3_crop=True, pool="none", image_size=(64, 64))
    assert c.out_shape == (16, 256) and c.grid == (4, 4)
    torch.testing.assert_close(c.backbone[6][0].conv1.weight, tv["layer3.0.conv1.weight"])

    with pytest.raises(ValueError, match="fc.weight has shape"):
        create_encoder("resnet18", pretrained=True, weights=str(tmp_path / "cosplace.pth"),
                       fc_dim=64)
    torch.save({"something.else": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="missing"):
        create_encoder("resnet18", pretrained=True, weights=str(tmp_path / "bad.pth"))


def test_vgg16_is_cut_at_conv5_and_loads_both_layouts(tmp_path):
    import torchvision
    tv = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"]).state_dict()
    tv = {f"features.{k}": v for k, v in tv.items()}
    # torchvision's classifier is dropped on load (tiny stand-ins keep the file small)
    torch.save(tv | {"classifier.0.weight": torch.zeros(2, 2)}, tmp_path / "vgg.pth")
    enc = create_encoder("vgg16", pretrained=True, weights=str(tmp_path / "vgg.pth"),
                         pool="none", image_size=(64, 96))
    assert isinstance(enc.backbone[-1], nn.Conv2d)  # conv5_3, before its ReLU and pool
    assert enc.out_shape == (4 * 6, 512)
    cos = {k.replace("features.", "backbone."): v for k, v in tv.items()
           if k.startswith("features.")}
    torch.save(cos, tmp_path / "cos_vgg.pth")
    enc2 = create_encoder("vgg16", pretrained=True, weights=str(tmp_path / "cos_vgg.pth"),
                          pool="none", image_size=(64, 96))
    assert _same_output(enc, enc2, (64, 96))


def test_cnn_freeze_follows_cosplace():
    enc = create_encoder("resnet18", freeze=6)  # CosPlace trains layer3 and layer4 only
    trainable = {n.split(".")[1] for n, p in enc.named_parameters()
                 if p.requires_grad and n.startswith("backbone.")}
    assert trainable == {"6", "7"}


def test_cct_tokens_and_seqpool():
    enc = create_encoder("cct384")
    assert enc.out_shape == (576, 384) and enc.grid == (24, 24)
    small = create_encoder("cct224", image_size=64, layers=1)
    assert small.out_shape == (16, 384)
    with torch.no_grad():
        assert small(torch.randn(2, 3, 64, 64)).shape == (2, 16, 384)
    pooled = create_encoder("cct224", image_size=64, layers=1, output="seqpool")
    assert pooled.out_shape == (384,) and pooled.grid is None


def test_cct_seqpool_is_raw_unless_asked_to_normalise():
    """vg-transformers' CAT/FC read the seq-pooled vectors as they come."""
    torch.manual_seed(0)
    raw = create_encoder("cct224", image_size=64, layers=1, output="seqpool").eval()
    unit = create_encoder("cct224", image_size=64, layers=1, output="seqpool", normalize=True)
    unit.load_state_dict(raw.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = raw(x), unit.eval()(x)
    assert not torch.allclose(a.norm(dim=1), torch.ones(2), atol=1e-3)
    torch.testing.assert_close(b, torch.nn.functional.normalize(a, dim=1))


def test_cct_tokens_and_patches_side_by_side():
    """STformer's frame features: the final tokens, then the tokenizer's tokens."""
    enc = create_encoder("cct224", image_size=64, layers=1, output="tokens+patches").eval()
    assert enc.out_shape == (16, 768) and enc.grid == (4, 4)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = enc(x)
        torch.testing.assert_close(out[..., 384:], enc.tokenizer(x))
        enc.output = "tokens"
        torch.testing.assert_close(out[..., :384], enc(x))


@pytest.mark.parametrize(("freeze", "trained_blocks"), [(None, {0, 1, 2, 3}), (0, {0, 1, 2, 3}),
                                                        (-1, {0, 1, 2, 3}), (1, {2, 3}),
                                                        (2, {3})])
def test_cct_freeze_layers_is_vg_transformers_freeze_te(freeze, trained_blocks):
    """--freeze_te k: everything frozen, then blocks after k trained again (0: nothing
    frozen; -1: only the tokenizer, the position table, the norm and the pooling)."""
    enc = create_encoder("cct224", layers=4, output="seqpool", freeze_layers=freeze)
    trained = {int(n.split(".")[2]) for n, p in enc.named_parameters()
               if p.requires_grad and n.startswith("classifier.blocks.")}
    assert trained == trained_blocks
    stem = [p.requires_grad for n, p in enc.named_parameters()
            if not n.startswith("classifier.blocks.")]
    assert all(stem) == (not freeze) and (any(stem) == (not freeze))


def test_cct_loads_release_layout_at_another_resolution(tmp_path):
    src = create_encoder("cct224", output="seqpool")
    state = src.state_dict() | {"classifier.fc.weight": torch.zeros(1000, 384),
                                "classifier.fc.bias": torch.zeros(1000)}
    torch.save(state, tmp_path / "cct.pth")
    enc = create_encoder("cct224", pretrained=True, weights=str(tmp_path / "cct.pth"),
                         image_size=64, layers=2)
    assert enc.classifier.positional_emb.shape == (1, 16, 384)  # 14x14 resized to 4x4
    grid = src.classifier.positional_emb.detach().reshape(1, 14, 14, 384).permute(0, 3, 1, 2)
    bilinear = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bilinear")  # pe_check
    torch.testing.assert_close(enc.classifier.positional_emb.detach(),
                               bilinear.permute(0, 2, 3, 1).reshape(1, 16, 384))
    torch.testing.assert_close(enc.classifier.blocks[1].linear1.weight,
                               src.classifier.blocks[1].linear1.weight)


def _official_dinov2_state(dim: int, depth: int) -> dict[str, torch.Tensor]:
    """Key names and shapes of facebookresearch/dinov2's dinov2_vit*14_pretrain.pth."""
    state = {"cls_token": torch.randn(1, 1, dim),
             "pos_embed": torch.randn(1, 1 + 37 * 37, dim),
             "mask_token": torch.zeros(1, dim),
             "patch_embed.proj.weight": torch.randn(dim, 3, 14, 14) * 0.02,
             "patch_embed.proj.bias": torch.zeros(dim),
             "norm.weight": torch.ones(dim), "norm.bias": torch.zeros(dim)}
    for i in range(depth):
        p = f"blocks.{i}."
        state |= {p + "norm1.weight": torch.ones(dim), p + "norm1.bias": torch.zeros(dim),
                  p + "attn.qkv.weight": torch.randn(3 * dim, dim) * 0.02,
                  p + "attn.qkv.bias": torch.zeros(3 * dim),
                  p + "attn.proj.weight": torch.randn(dim, dim) * 0.02,
                  p + "attn.proj.bias": torch.zeros(dim),
                  p + "ls1.gamma": torch.full((dim,), 0.1),
                  p + "norm2.weight": torch.ones(dim), p + "norm2.bias": torch.zeros(dim),
                  p + "mlp.fc1.weight": torch.randn(4 * dim, dim) * 0.02,
                  p + "mlp.fc1.bias": torch.zeros(4 * dim),
                  p + "mlp.fc2.weight": torch.randn(dim, 4 * dim) * 0.02,
                  p + "mlp.fc2.bias": torch.zeros(dim),
                  p + "ls2.gamma": torch.full((dim,), 0.1)}
    return state


def test_dinov2_official_layout_loads_strictly(tmp_path):
    state = _official_dinov2_state(384, 12)
    torch.save(state, tmp_path / "dinov2_vits14_pretrain.pth")
    enc = create_encoder("dinov2_vits14", pretrained=True, image_size=(28, 42),
                         weights=str(tmp_path / "dinov2_vits14_pretrain.pth"))
    assert set(enc.state_dict()) == set(state)
    for key, value in state.items():
        assert torch.equal(enc.state_dict()[key], value), key
    # one extra or one missing tensor is refused: strict means strict
    torch.save(state | {"blocks.12.ls1.gamma": torch.ones(384)}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match="unexpected"):
        create_encoder("dinov2_vits14", pretrained=True, weights=str(tmp_path / "extra.pth"))
    state.pop("mask_token")
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(ValueError, match="mask_token"):
        create_encoder("dinov2_vits14", pretrained=True, weights=str(tmp_path / "short.pth"))


def test_dinov2_tokens_position_embedding_and_freezing():
    enc = create_encoder("dinov2_vits14", image_size=(28, 42), trainable_blocks=2)
    assert enc.out_shape == (1 + 2 * 3, 384) and enc.grid == (2, 3) and enc.prefix_tokens == 1
    with torch.no_grad():
        assert enc(torch.randn(1, 3, 28, 42)).shape == (1, 7, 384)
    # at the pre-training grid the table is used as is; elsewhere it is resized
    full = enc.position_embedding(PRETRAIN_GRID, PRETRAIN_GRID)
    assert torch.equal(full, enc.pos_embed)
    assert enc.position_embedding(5, 7).shape == (1, 36, 384)
    trainable = {n.split(".")[1] for n, p in enc.named_parameters()
                 if p.requires_grad and n.startswith("blocks.")}
    assert trainable == {"10", "11"}
    assert not enc.patch_embed.proj.weight.requires_grad and enc.norm.weight.requires_grad
    with pytest.raises(ValueError, match="divisible by 14"):
        create_encoder("dinov2_vits14", image_size=(30, 42))
    cls = create_encoder("dinov2_vitb14", image_size=(28, 28), output="cls")
    assert cls.out_shape == (768,)
