"""Core aggregators: cat, avg, max, seqgem, none."""

from __future__ import annotations

import pytest
import torch

from seqvpr_core.models import build_model, create_aggregator, list_aggregators


@pytest.mark.parametrize("length", [1, 3, 5, 10])
def test_seqgem_accepts_any_length_and_ignores_order(length):
    agg = create_aggregator("seqgem")
    x = torch.rand(2, length, 64)
    out = agg(x)
    assert out.shape == (2, 64)
    torch.testing.assert_close(out, agg(x[:, torch.randperm(length)]))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_seqgem_p_is_learnable_and_interpolates_mean_and_max():
    agg = create_aggregator("seqgem", p=1.0)
    x = torch.rand(1, 4, 8)
    torch.testing.assert_close(agg(x), torch.nn.functional.normalize(x.mean(1)))
    agg(x).sum().backward()
    assert agg.p.grad is not None
    big = create_aggregator("seqgem", p=60.0)
    torch.testing.assert_close(big(x), torch.nn.functional.normalize(x.amax(1)), atol=0.05,
                               rtol=0)


def test_cat_refuses_other_lengths_with_a_clear_error():
    agg = create_aggregator("cat", length=5)
    assert agg(torch.rand(1, 5, 16)).shape == (1, 80)
    with pytest.raises(ValueError, match="exactly 5 frames, got 3"):
        agg(torch.rand(1, 3, 16))


def test_cat_inner_product_is_mean_frame_similarity():
    """The SeqSLAM reading of concatenation (L2-normalised frames)."""
    a = torch.nn.functional.normalize(torch.randn(1, 4, 32), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(1, 4, 32), dim=-1)
    agg = create_aggregator("cat", length=4)
    expected = (a * b).sum(-1).mean()
    torch.testing.assert_close((agg(a) * agg(b)).sum(), expected)


def test_none_is_the_newest_frame_and_empty_windows_are_refused():
    x = torch.rand(2, 3, 16)
    agg = create_aggregator("none")
    torch.testing.assert_close(agg(x), torch.nn.functional.normalize(x[:, -1]))
    with pytest.raises(ValueError, match="empty window"):
        agg(torch.rand(2, 0, 16))


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="known: .*seqgem"):
        create_aggregator("nope")
    with pytest.raises(ValueError, match="encoders: .*pixels"):
        build_model("pixels")
    assert {"cat", "avg", "max", "seqgem", "none"} <= set(list_aggregators())


def test_short_name_needs_window_for_fixed_length_aggregators():
    with pytest.raises(ValueError, match="needs a fixed window length"):
        build_model("pixels+cat")
    assert build_model("pixels+cat", window=4).fixed_length == 4


def test_frame_head_runs_once_per_frame_and_is_shared_and_saved(tmp_path):
    from seqvpr_core.models import load_model

    model = build_model({"encoder": {"name": "pixels"}, "head": {"dim": 32},
                         "aggregator": "seqgem"})
    assert model.frame_shape == (32,) and model.descriptor_dim == 32
    frames = torch.randint(0, 255, (3, 32, 64, 3), dtype=torch.uint8).numpy()
    feats = model.encode_frames(frames)
    with torch.inference_mode():
        torch.testing.assert_close(feats,
                                   model.apply_head(model.encode_backbone_frames(frames)))
    single = model.with_aggregator("none")
    assert single.head is model.head
    model.save(tmp_path / "m.pt")
    torch.testing.assert_close(load_model(tmp_path / "m.pt").encode_frames(frames), feats)
    with pytest.raises(ValueError, match="head must be"):
        build_model({"encoder": "pixels", "head": {"size": 3}, "aggregator": "avg"})


def test_fingerprint_follows_weight_changes():
    """Maps are tied to exact weights, so an in-place update must change the hash."""
    model = build_model({"encoder": "pixels", "aggregator": "seqgem"})
    before = model.fingerprint()
    assert model.fingerprint() == before
    with torch.no_grad():
        model.aggregator.p.add_(0.5)
    assert model.fingerprint() != before
