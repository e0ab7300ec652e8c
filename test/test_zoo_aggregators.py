"""Defining properties of the zoo's sequence aggregators, checked on the modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from seqvpr_core.models import create_aggregator
from seqvpr_core.models.aggregators.adapt_stformer import DeformableCrossAttention
from seqvpr_core.models.aggregators.netvlad import NetVLAD, kmeans
from seqvpr_core.models.aggregators.stformer import (
    WindowSpaceTimeAttention,
    key_positions,
    relative_terms,
)

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
    "stformer": ({"in_dim": 2 * C, "grid": GRID, "heads": 4, "window": 2, "stride": 1,
                  "temporal_layers": 1, "clusters": 4}, (N, 2 * C)),
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


def _window_attention(grid, window, stride, length=3, relative=True):
    torch.manual_seed(0)
    attn = WindowSpaceTimeAttention(C, 4, length, grid, window, stride, relative).eval()
    if relative:
        with torch.no_grad():
            for table in (attn.rel_pos_h, attn.rel_pos_w, attn.rel_pos_t):
                table.normal_(0, 0.5)
    return attn


def test_stformer_temporal_attention_mixes_frames_only_within_its_windows():
    """3x3 windows, stride 3, on a 6x6 grid: four disjoint windows over all 3 frames."""
    attn = _window_attention((6, 6), 3, 3)
    x = torch.randn(3, 36, C)  # [(B T), N, C], one clip of 3 frames
    changed = x.clone()
    changed[2, 4 * 6 + 5] += 10.0  # frame 2, token (4, 5): the bottom-right window
    with torch.no_grad():
        a, b = attn(x).view(3, 6, 6, C), attn(changed).view(3, 6, 6, C)
    moved = (a - b).abs().amax(-1) > 1e-6  # [T, 6, 6]
    assert moved[:, 3:, 3:].all()  # every frame's tokens of that window see it
    assert not moved[:, :3].any() and not moved[:, :, :3].any()  # the other windows do not


def test_stformer_overlapping_windows_are_summed():
    """4x4 windows with stride 2 on a 6x6 grid (2 x 2 windows): the output is the sum
    of what each window's attention gives its tokens."""
    attn = _window_attention((6, 6), 4, 2)
    alone = WindowSpaceTimeAttention(C, 4, 3, (4, 4), 4, 4).eval()
    alone.load_state_dict(attn.state_dict())  # the same weights, one window at a time
    x = torch.randn(3, 36, C)
    with torch.no_grad():
        out = attn(x).view(3, 6, 6, C)
        expected = torch.zeros(3, 6, 6, C)
        grid = x.view(3, 6, 6, C)
        for y in (0, 2):
            for z in (0, 2):
                crop = grid[:, y:y + 4, z:z + 4].reshape(3, 16, C)
                expected[:, y:y + 4, z:z + 4] += alone(crop).view(3, 4, 4, C)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_stformer_relative_positions_depend_on_the_query_and_the_offsets():
    attn = _window_attention((6, 6), 3, 3)
    d = C // 4
    q = torch.randn(1, 1, 1, d).expand(1, 1, 3 * 9, d)  # the same query at every position
    def logits_of(q):
        terms = relative_terms(q, attn.rel_pos_h, attn.rel_pos_w, attn.rel_pos_t, (3, 3, 3))
        return terms @ key_positions((3, 3, 3)).T

    logits = logits_of(q).view(3, 3, 3, 3, 3, 3)  # [t, y, x, t', y', x']
    # the same (dt, dy, dx) gives the same logit wherever it occurs
    torch.testing.assert_close(logits[0, 0, 0, 1, 1, 2], logits[1, 1, 0, 2, 2, 2])
    torch.testing.assert_close(logits[2, 2, 1, 0, 0, 0], logits[2, 2, 2, 0, 0, 1])
    # and it is q . (R_h[dy] + R_w[dx] + R_t[dt]): linear in the query, not a fixed bias
    dt, dy, dx = -1, 1, 2
    expected = q[0, 0, 0] @ (attn.rel_pos_h[2 + (0 - dy)] + attn.rel_pos_w[2 + (0 - dx)]
                             + attn.rel_pos_t[2 + (1 - (1 + dt))])
    torch.testing.assert_close(logits[1, 0, 0, 1 + dt, dy, dx], expected)
    doubled = logits_of(2 * q)
    torch.testing.assert_close(doubled, 2 * logits.reshape(doubled.shape))


def test_stformer_windows_must_tile_the_grid():
    with pytest.raises(ValueError, match="do not tile the 7x7 token grid"):
        WindowSpaceTimeAttention(C, 4, 5, (7, 7), 6, 3)


def test_stformer_freeze_temporal_below_minus_one_is_refused():
    """--freeze_te_tatt as --freeze_te: -1 is the lowest (every block trains)."""
    with pytest.raises(ValueError, match="freeze_temporal must be >= -1"):
        create_aggregator("stformer", in_dim=2 * C, grid=(4, 4), length=2, temporal_layers=1,
                          window=2, stride=1, heads=4, clusters=2, freeze_temporal=-2)


def test_deformable_attention_samples_k_points_per_head(monkeypatch):
    heads, points = 8, 4
    attn = DeformableCrossAttention(C, GRID, heads, levels=1, points=points)
    seen = []
    real = torch.nn.functional.grid_sample

    def spy(value, grid, **kw):
        seen.append((tuple(value.shape), tuple(grid.shape)))
        return real(value, grid, **kw)

    monkeypatch.setattr(torch.nn.functional, "grid_sample", spy)
    q = torch.randn(2, N, C)
    with torch.no_grad():
        attn.eval()(q, torch.randn(2, N, C))
    # one bilinear read per (batch, head), at K locations for each of the N queries
    assert seen == [((2 * heads, C // heads, *GRID), (2 * heads, N, points, 2))]
    assert attn.sampling_offsets.out_features == heads * points * 2
    assert attn.attention_weights.out_features == heads * points


def test_deformable_attention_starts_at_the_authors_circle_of_points():
    """Zero offset weights; head h points along angle 2 pi h / heads, point k at k+1
    tokens (offsets / normalizer = tokens of the grid), uniform attention."""
    attn = DeformableCrossAttention(C, (24, 24), heads=4, levels=1, points=2)
    loc, weights = attn.sample_points(torch.randn(1, 576, C))
    step = (loc[0] - attn.reference_points[:, None, None]) * 24  # in tokens [N, heads, K, 2]
    expected = torch.tensor([[[1.0, 0.0], [2.0, 0.0]], [[0.0, 1.0], [0.0, 2.0]],
                             [[-1.0, 0.0], [-2.0, 0.0]], [[0.0, -1.0], [0.0, -2.0]]])
    torch.testing.assert_close(step, expected.expand_as(step), atol=1e-5, rtol=0)
    torch.testing.assert_close(weights, torch.full_like(weights, 0.5))


def test_two_level_offsets_are_read_as_the_authors_cuda_path_reads_them():
    """levels=2 on one value map: per sample, the first N*heads*K (x, y) pairs of the
    level-major [N, heads, levels, K] tensor, i.e. query q, head h takes the points of
    (query, head, level) = divmod(q * heads + h, levels) of the full prediction."""
    heads, levels, points = 2, 2, 3
    attn = DeformableCrossAttention(C, GRID, heads, levels, points)
    with torch.no_grad():
        attn.sampling_offsets.weight.normal_()
        attn.attention_weights.weight.normal_()
    q = torch.randn(3, N, C)
    loc, weights = attn.sample_points(q)
    full = (attn.reference_points[None, :, None, None, None]
            + attn.sampling_offsets(q).view(3, N, heads, levels, points, 2) / attn.normalizer)
    full_w = attn.attention_weights(q).view(3, N, heads, levels * points).softmax(-1)
    for n, h in ((0, 0), (0, 1), (5, 1), (N - 1, 1)):
        pair, level = divmod(n * heads + h, levels)
        torch.testing.assert_close(loc[:, n, h], full[:, pair // heads, pair % heads, level])
        torch.testing.assert_close(weights[:, n, h], full_w.view(3, N, heads, levels, points)[
            :, pair // heads, pair % heads, level])
    with torch.no_grad():  # each sample on its own: the same as in a batch
        torch.testing.assert_close(attn.eval()(q, q)[1:2], attn(q[1:2], q[1:2]))


def _flops(make, n_side: int) -> int:
    grid = (n_side, n_side)
    x = torch.randn(1, n_side * n_side, C)
    module = make(grid)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x, x) if isinstance(module, DeformableCrossAttention) else module(x, x, x)
    return counter.get_total_flops()


def test_deformable_attention_cost_grows_linearly_with_tokens():
    def deform(grid):
        return DeformableCrossAttention(C, grid, 8, 1, 4)

    def dense(grid):
        return torch.nn.MultiheadAttention(C, 8, batch_first=True)

    d_small, d_big = _flops(deform, 8), _flops(deform, 32)  # 64 -> 1024 tokens (x16)
    assert d_big / d_small == pytest.approx(16, rel=0.01)
    full_small, full_big = _flops(dense, 8), _flops(dense, 32)
    assert full_big / full_small > 30  # dense attention is quadratic: ~x(16..256)


def test_adapt_stformer_reads_frames_through_the_authors_view():
    """frame_reshape='view': each frame's [N, C] tokens in memory order read as
    [C, N] and transposed (the authors' Detr); 'tokens': the tokens themselves."""
    x = torch.arange(2 * N * C, dtype=torch.float32).view(1, 2, N, C)
    view = _agg("adapt_stformer", in_dim=C, grid=GRID, clusters=4).frames(x)
    torch.testing.assert_close(view[0, 1], x[0, 1].reshape(C, N).T)
    assert not torch.equal(view, x)
    tokens = _agg("adapt_stformer", in_dim=C, grid=GRID, clusters=4, frame_reshape="tokens")
    assert torch.equal(tokens.frames(x), x)


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


def test_stformer_temporal_branch_starts_from_a_cct_checkpoint_when_built_pretrained(tmp_path):
    """The authors build the temporal branch from the ImageNet CCT's classifier; a
    reloaded model (pretrained=False) never reads the file again."""
    from seqvpr_core.models import SequenceModel, create_encoder

    cct = create_encoder("cct224", layers=2)
    torch.save(cct.state_dict(), tmp_path / "cct.pth")
    config = {"encoder": {"name": "cct224", "image_size": 64, "layers": 1,
                          "output": "tokens+patches"},
              "aggregator": {"name": "stformer", "length": 3, "temporal_layers": 2,
                             "window": 2, "stride": 1, "clusters": 4, "freeze_temporal": -1,
                             "weights": str(tmp_path / "cct.pth")}}
    model = SequenceModel(config, pretrained=False)
    first = cct.classifier.blocks[1].linear1.weight
    assert not torch.equal(model.aggregator.temporal.blocks[1].linear1.weight, first)
    config["encoder"]["pretrained"] = False  # the encoder random, the aggregator from the file
    temporal = SequenceModel(config, pretrained=True).aggregator.temporal
    torch.testing.assert_close(temporal.blocks[1].linear1.weight, first)
    torch.testing.assert_close(temporal.norm.bias, cct.classifier.norm.bias)
    # --freeze_te_tatt -1: the blocks (and their position tables) train, the norm does not
    assert not temporal.norm.weight.requires_grad
    assert temporal.blocks[0].self_attn.rel_pos_t.requires_grad


def test_a_pretrained_stformer_without_a_temporal_checkpoint_is_refused():
    """Never a silently random temporal branch: pretrained needs its CCT file."""
    from seqvpr_core.models import SequenceModel

    config = {"encoder": {"name": "cct224", "image_size": 64, "layers": 1,
                          "output": "tokens+patches", "pretrained": False},
              "aggregator": {"name": "stformer", "length": 3, "temporal_layers": 1,
                             "window": 2, "stride": 1, "clusters": 4}}
    with pytest.raises(FileNotFoundError, match="stformer temporal branch.*pretrained=False"):
        SequenceModel(config, pretrained=True)
    assert SequenceModel(config, pretrained=False).aggregator.temporal is not None


@pytest.mark.parametrize("name,options", [
    ("stformer", {"heads": 0}), ("adapt_stformer", {"heads": 0}), ("timesformer", {"heads": 0}),
    ("stformer", {"heads": 5}), ("adapt_stformer", {"heads": 2.5})])
def test_attention_heads_that_do_not_split_the_channels_are_refused(name, options):
    """A message naming the heads, never a ZeroDivisionError from inside a constructor."""
    from seqvpr_core.models import SequenceModel

    encoder = {"name": "vit", "output": "patches", "pretrained": False} if name == "timesformer" \
        else {"name": "cct224", "image_size": 64, "layers": 1, "pretrained": False,
              "output": "tokens+patches" if name == "stformer" else "tokens"}
    with pytest.raises(ValueError, match="heads"):
        SequenceModel({"encoder": encoder, "aggregator": {"name": name, **options}},
                      pretrained=False)
