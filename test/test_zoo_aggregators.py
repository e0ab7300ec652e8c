"""Defining properties of the zoo's sequence aggregators, checked on the modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from seqvpr_core.models import create_aggregator
from seqvpr_core.models.aggregators.adapt_stformer import DeformableAttention
from seqvpr_core.models.aggregators.netvlad import NetVLAD, kmeans

C, GRID = 32, (4, 4)
N = GRID[0] * GRID[1]


def _agg(name: str, **kw):
    torch.manual_seed(0)
    return create_aggregator(name, **kw).eval()


LENGTH_AGNOSTIC = {
    "seqgem": ({}, (C,)),
    "seqvlad": ({"in_dim": C, "clusters": 4}, (N, C)),
    "adapt_stformer": ({"in_dim": C, "grid": GRID, "clusters": 4}, (N, C)),
}


@pytest.mark.parametrize("name", sorted(LENGTH_AGNOSTIC))
def test_same_descriptor_size_for_windows_of_1_3_5_10(name):
    kw, frame = LENGTH_AGNOSTIC[name]
    agg = _agg(name, **kw)
    assert agg.variable_length
    sizes = set()
    for t in (1, 3, 5, 10):
        with torch.no_grad():
            out = agg(torch.rand(2, t, *frame))
        sizes.add(tuple(out.shape))
        torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    assert sizes == {(2, agg.out_dim(C))}


@pytest.mark.parametrize("name", ["seqgem", "seqvlad"])
def test_invariant_to_frame_order(name):
    kw, frame = LENGTH_AGNOSTIC[name]
    agg = _agg(name, **kw)
    x = torch.rand(3, 5, *frame)
    with torch.no_grad():
        a, b = agg(x), agg(x[:, torch.tensor([3, 0, 4, 2, 1])])
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert not torch.allclose(a[0], a[1])  # and not trivially constant


def test_adapt_stformer_is_recurrent_so_order_matters():
    agg = _agg("adapt_stformer", in_dim=C, grid=GRID, clusters=4)
    with torch.no_grad():
        for p in agg.parameters():  # move off the symmetric init
            p.add_(torch.randn_like(p) * 0.05)
        x = torch.rand(1, 4, N, C)
        assert not torch.allclose(agg(x), agg(x.flip(1)))


FIXED = {
    "fc": ({"in_dim": C}, (C,)),
    "mixer": ({"in_dim": C, "out_rows": 2, "out_cols": 8}, (C,)),
    "stformer": ({"in_dim": C, "grid": GRID, "heads": 4, "clusters": 4}, (N, C)),
}


@pytest.mark.parametrize("name", sorted(FIXED))
def test_fixed_length_aggregators_refuse_other_lengths(name):
    kw, frame = FIXED[name]
    agg = _agg(name, length=5, **kw)
    assert agg.length == 5 and not agg.variable_length
    with torch.no_grad():
        assert agg(torch.rand(2, 5, *frame)).shape == (2, agg.out_dim(C))
        for t in (3, 6):
            with pytest.raises(ValueError, match=f"exactly 5 frames, got {t}"):
                agg(torch.rand(2, t, *frame))


@pytest.mark.parametrize("length", [3, 5, 8])
def test_seqnet_is_a_temporal_convolution_then_mean_at_any_length(length):
    agg = _agg("seqnet", in_dim=C, out_dim=16, kernel=3)
    x = torch.rand(2, length, C)
    w, b = agg.conv.weight, agg.conv.bias  # [16, C, 3]
    steps = [torch.einsum("ock,bkc->bo", w, x[:, s:s + 3]) + b
             for s in range(length - 2)]
    expected = torch.nn.functional.normalize(torch.stack(steps).mean(0), dim=1)
    with torch.no_grad():
        torch.testing.assert_close(agg(x), expected, atol=1e-5, rtol=1e-5)


def test_seqnet_refuses_windows_shorter_than_its_kernel():
    agg = _agg("seqnet", in_dim=C, out_dim=16, kernel=3)
    with pytest.raises(ValueError, match="at least 3 frames"):
        agg(torch.rand(1, 2, C))


def _temporal_attention(window=3, length=4):
    agg = _agg("stformer", length=length, in_dim=C, grid=(6, 6), heads=4, window=window,
               clusters=4)
    return agg.temporal[0].attn


def test_stformer_temporal_attention_sees_only_its_sliding_window():
    attn = _temporal_attention(window=3)
    x = torch.randn(1, 4, 6, 6, C)
    with torch.no_grad():
        base = attn(x)
        outside = x.clone()
        outside[0, 2, 4, 5] += 10.0  # patch (4, 5) of frame 2: far from (1, 1)
        moved = attn(outside)
        inside = x.clone()
        inside[0, 3, 2, 2] += 10.0  # patch (2, 2) of the last frame: within 1 of (1, 1)
        near = attn(inside)
    # query (1, 1) in every frame ignores the far patch and sees the near one, at any t
    torch.testing.assert_close(moved[0, :, 1, 1], base[0, :, 1, 1], atol=0, rtol=0)
    assert not torch.allclose(near[0, 0, 1, 1], base[0, 0, 1, 1])
    # the query at the changed patch itself (and its neighbours) does change
    assert not torch.allclose(moved[0, 0, 4, 5], base[0, 0, 4, 5])


def test_stformer_relative_bias_depends_only_on_offsets():
    attn = _temporal_attention(window=3, length=4)
    with torch.no_grad():
        for p in (attn.bias_h, attn.bias_w, attn.bias_t):
            p.copy_(torch.randn_like(p))
    bias = attn.relative_bias(4).view(4, 4, 4, 3, 3)  # [head, t, t', dy, dx]
    for t in range(4):
        for t2 in range(4):
            # the same time offset gives the same bias wherever it occurs
            torch.testing.assert_close(bias[:, t, t2], bias[:, 0, t2 - t] if t2 >= t
                                       else bias[:, t - t2, 0])
    # and it decomposes: b_t[dt] + b_h[dy] + b_w[dx]
    dt, dy, dx = 2, 0, 2
    expected = attn.bias_t[:, dt + 3] + attn.bias_h[:, dy] + attn.bias_w[:, dx]
    torch.testing.assert_close(bias[:, 0, dt, dy, dx], expected)
    # the bias table has no entry that depends on the absolute patch position
    n_bias = sum(p.numel() for n, p in attn.named_parameters() if n.startswith("bias"))
    assert n_bias == 4 * (3 + 3 + 2 * 4 - 1)


def test_deformable_attention_samples_k_points_per_head(monkeypatch):
    heads, points = 8, 4
    attn = DeformableAttention(C, heads, points)
    seen = []
    real = torch.nn.functional.grid_sample

    def spy(value, grid, **kw):
        seen.append((tuple(value.shape), tuple(grid.shape)))
        return real(value, grid, **kw)

    monkeypatch.setattr(torch.nn.functional, "grid_sample", spy)
    q = torch.randn(2, N, C)
    with torch.no_grad():
        attn(q, torch.randn(2, N, C), GRID)
    # one bilinear read per (batch, head), at K locations for each of the N queries
    assert seen == [((2 * heads, C // heads, *GRID), (2 * heads, N, points, 2))]
    assert attn.sampling_offsets.out_features == heads * points * 2
    assert attn.attention_weights.out_features == heads * points


def _flops(module, n_side: int) -> int:
    grid = (n_side, n_side)
    x = torch.randn(1, n_side * n_side, C)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x, x, grid) if isinstance(module, DeformableAttention) else module(x, x, x)
    return counter.get_total_flops()


def test_deformable_attention_cost_grows_linearly_with_tokens():
    deform = DeformableAttention(C, 8, 4)
    dense = torch.nn.MultiheadAttention(C, 8, batch_first=True)
    d_small, d_big = _flops(deform, 8), _flops(deform, 32)  # 64 -> 1024 tokens (x16)
    assert d_big / d_small == pytest.approx(16, rel=0.01)
    # sampling itself: N * heads * K bilinear reads of C/heads channels, also linear
    full_small, full_big = _flops(dense, 8), _flops(dense, 32)
    assert full_big / full_small > 30  # dense attention is quadratic: ~x(16..256)


def test_netvlad_kmeans_init_assigns_to_nearest_centre():
    """The authors' vladv1 init (SeqVLAD's): no bias, nearest centre ~100x likelier."""
    torch.manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(4, C), dim=1)
    feats = (centres.repeat(50, 1) + 0.01 * torch.randn(200, C))
    found = kmeans(torch.nn.functional.normalize(feats, dim=1), 4)
    assert torch.cdist(found, centres).min(dim=0).values.max() < 0.05
    vlad = NetVLAD(C, 4)
    alpha = vlad.init_from_features(feats)
    assert vlad.assign.bias is None and alpha > 0
    soft = vlad.assign(torch.nn.functional.normalize(feats, dim=1)).softmax(-1)
    nearest = torch.cdist(feats, vlad.centroids.detach()).argmin(1)
    assert (soft.argmax(1) == nearest).all() and soft.max(1).values.mean() > 0.9
    with pytest.raises(ValueError, match="at least 4 features"):
        kmeans(torch.randn(3, C), 4)


def test_netvlad_vladv2_init_is_the_authors_formula():
    """Nanne's vladv2: w = 2 alpha c, b = -alpha |c|, alpha from squared *indices*."""
    torch.manual_seed(1)
    centres, descs = torch.rand(4, C), torch.rand(40, C)
    vlad = NetVLAD(C, 4, init="vladv2")
    alpha = vlad.init_params(centres, descs)
    nearest = torch.cdist(centres, descs).argsort(1)[:, :2].double() ** 2
    assert alpha == pytest.approx(-np.log(0.01) / float((nearest[:, 1] - nearest[:, 0]).mean()))
    torch.testing.assert_close(vlad.assign.weight, 2 * alpha * centres)
    torch.testing.assert_close(vlad.assign.bias, -alpha * centres.norm(dim=1))
    assert _agg("seqvlad", in_dim=C, clusters=4, init="vladv2").vlad.assign.bias is not None
    with pytest.raises(ValueError, match="init must be one of"):
        NetVLAD(C, 4, init="paper")


def test_seqvlad_is_netvlad_over_all_tokens_of_all_frames():
    agg = _agg("seqvlad", in_dim=C, clusters=4)
    x = torch.rand(2, 3, N, C)
    with torch.no_grad():
        torch.testing.assert_close(agg(x), agg.vlad(x.reshape(2, 3 * N, C)))
        # a global vector per frame counts as one token
        assert agg(torch.rand(2, 3, C)).shape == (2, 4 * C)
