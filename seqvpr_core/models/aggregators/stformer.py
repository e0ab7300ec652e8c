"""STformer: a spatial and a windowed space-time CCT branch, summed, then SeqVLAD.

Zhao et al., "Learning Sequence Descriptor based on Spatio-Temporal Attention
for Visual Place Recognition" (STformer), RA-L 2024, arXiv:2305.11467; the
authors' code is tiev-tongji/Spatio-Temporal-SeqVPR (``svpr/models/encoder.py``
``STEcoder``, ``cct_utils/transformers.py`` ``Attention(use_for_t=True)``).
Both branches start from the same CCT tokenizer output of each frame:

- spatial: a CCT-14 classifier (position table, ``trunc_te`` blocks, norm)
  within each frame;
- temporal: another CCT classifier (``trunc_te_tatt`` blocks, 6 heads) whose
  attention cuts the grid into k x k windows with stride s (6 and 3: 7 x 7 = 49
  windows on the 24 x 24 grid) and lets the k*k tokens of a window in all L
  frames attend to each other; the outputs are folded back, overlaps summed.
  Positions enter the logits as MViTv2's decomposed relative terms q.R_h[dy] +
  q.R_w[dx] + q.R_t[dt], which depend on the query (with relative positions the
  branch adds no position table).

SeqVLAD pools the L*N summed tokens. L is fixed: the space-time attention spans
``temporal_frames`` frames (the authors' hard-coded 5, which the time table's
offsets fix) and a window of L = k * 5 frames, as the authors' ``--seq_length 10``
runs, attends within each run of 5 consecutive frames; SeqVLAD still pools all L.

Streaming split: the tokenizer and the spatial branch see one frame, so they run
in the frame encoder (``cct*`` with ``output='tokens+patches'``) and are cached
in the ring, once per frame; the temporal branch mixes frames, so it runs here,
once per window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..base import Aggregator
from ..encoders.cct import FORMATS, CCTBlock, freeze_te, init_linear_and_norm
from ..layers import check_heads
from ..registry import register_aggregator
from ..weights import read_state_dict, weights_to_load
from .netvlad import NetVLAD


def relative_terms(q: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor,
                   rel_t: torch.Tensor, thw: tuple[int, int, int]) -> torch.Tensor:
    """MViTv2's decomposed relative positions (the authors' ``_add_rel_pos``, query
    and key windows of one shape): q [B, heads, T*k*k, d] -> per query, its terms
    q.R_h[qy-ky] for each key row ky, q.R_w[qx-kx] for each key column, q.R_t[qt-kt]
    for each key frame: [B, heads, T*k*k, k + k + T]. The logit of a key is the sum
    of its three terms: ``terms @ key_positions(thw).T``."""
    t, h, w = thw
    b, heads, _, d = q.shape

    def table(rel: torch.Tensor, n: int) -> torch.Tensor:  # [n (query), n (key), d]
        idx = torch.arange(n, device=rel.device)
        return rel[idx[:, None] - idx[None, :] + n - 1]

    q = q.reshape(b, heads, t, h, w, d)
    lh = torch.einsum("bythwc,hkc->bythwk", q, table(rel_h, h))
    lw = torch.einsum("bythwc,wkc->bythwk", q, table(rel_w, w))
    lt = torch.einsum("bythwc,tkc->bythwk", q, table(rel_t, t))
    return torch.cat([lh, lw, lt], -1).reshape(b, heads, t * h * w, h + w + t)


def key_positions(thw: tuple[int, int, int]) -> torch.Tensor:
    """Each key's row, column and frame one-hot, [T*k*k, k + k + T] (keys ordered
    frame, row, column): picks a key's three terms out of :func:`relative_terms`."""
    t, h, w = thw
    kt, kh, kw = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w),
                                indexing="ij")
    return torch.cat([F.one_hot(kh.flatten(), h), F.one_hot(kw.flatten(), w),
                      F.one_hot(kt.flatten(), t)], -1).float()


class WindowSpaceTimeAttention(nn.Module):
    """[(B T), N, C] normed tokens of T-frame clips -> [(B T), N, C]: attention among
    the T*k*k tokens of each k x k window (stride s), outputs folded back summed."""

    def __init__(self, dim: int, heads: int, length: int, grid: tuple[int, int],
                 window: int = 6, stride: int = 3, relative_positions: bool = True) -> None:
        super().__init__()
        check_heads(dim, heads)
        h, w = grid
        covered = [(n - window) % stride == 0 and n >= window for n in (h, w)]
        if window < 1 or stride < 1 or not all(covered):
            raise ValueError(f"{window}x{window} windows with stride {stride} do not tile the "
                             f"{h}x{w} token grid (need (side - window) % stride == 0)")
        self.heads, self.length, self.grid = heads, length, (h, w)
        self.window, self.stride = window, stride
        # Token index (frame t, row, column) of each window token, ordered (window,
        # frame, row, column) as the authors' unfold + rearrange orders them.
        grid = torch.arange(h * w).view(h, w)
        starts = [(y, z) for y in range(0, h - window + 1, stride)
                  for z in range(0, w - window + 1, stride)]
        windows = torch.stack([grid[y:y + window, z:z + window].flatten() for y, z in starts])
        frames = torch.arange(length).view(1, -1, 1) * (h * w)
        self.register_buffer("window_index", (windows[:, None] + frames).flatten(),
                             persistent=False)
        counts = torch.bincount(windows.flatten(), minlength=h * w).float()
        self.register_buffer("windows_per_token", counts.view(-1, 1), persistent=False)
        self.register_buffer("key_positions", key_positions((length, window, window)),
                             persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = self.rel_pos_w = self.rel_pos_t = None
        if relative_positions:
            hd = dim // heads
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * window - 1, hd))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * window - 1, hd))
            self.rel_pos_t = nn.Parameter(torch.zeros(2 * length - 1, hd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bt, n, c = x.shape
        t = self.length
        b, kk = bt // t, self.window * self.window
        n_win = self.window_index.shape[0] // (t * kk)
        # qkv and proj act per token, so they run on the N tokens, not on the ~3x more
        # window tokens (a token is in up to 4 windows): the same numbers, a third of
        # the work. One gather makes the windows, one scatter-add folds them back.
        qkv = self.qkv(x).view(b, t * n, 3 * c)[:, self.window_index]
        q, key, v = qkv.view(b * n_win, t * kk, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        bias = None
        if self.rel_pos_h is not None:
            terms = relative_terms(q, self.rel_pos_h, self.rel_pos_w, self.rel_pos_t,
                                   (t, self.window, self.window))
            bias = terms @ self.key_positions.T  # [(b win), heads, tkk, tkk]
        out = F.scaled_dot_product_attention(q, key, v, attn_mask=bias)  # [(b win), h, tkk, d]
        out = out.transpose(1, 2).reshape(b, n_win * t * kk, c)
        summed = x.new_zeros(b, t * n, c).index_add_(1, self.window_index, out)
        # proj of every window's output, overlaps summed: its bias once per window
        return (F.linear(summed.view(bt, n, c), self.proj.weight)
                + self.windows_per_token * self.proj.bias)


class TemporalBranch(nn.Module):
    """The authors' ``encoder.temporal``: CCT blocks with space-time window attention,
    then the final norm; a position table only without relative positions."""

    def __init__(self, dim: int, heads: int, layers: int, length: int, grid: tuple[int, int],
                 window: int, stride: int, relative_positions: bool,
                 mlp_ratio: float = 3.0) -> None:
        super().__init__()
        n = grid[0] * grid[1]
        self.positional_emb = None
        if not relative_positions:
            self.positional_emb = nn.Parameter(torch.empty(1, n, dim))
        self.blocks = nn.ModuleList(
            CCTBlock(dim, heads, mlp_ratio, WindowSpaceTimeAttention(
                dim, heads, length, grid, window, stride, relative_positions))
            for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.apply(init_linear_and_norm)
        for p in (self.positional_emb, *self._rel_tables()):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.2 if p is self.positional_emb else 0.02)

    def _rel_tables(self) -> list[torch.Tensor | None]:
        return [getattr(b.self_attn, f"rel_pos_{a}") for b in self.blocks for a in "hwt"]

    def load_cct(self, path: str) -> None:
        """Start from a CCT-14 checkpoint's first blocks and final norm, as the authors
        build this branch (``cct_14_7x2_384(pretrained=True).classifier``); the
        relative-position tables keep their init."""
        state = read_state_dict(path, "stformer temporal branch", FORMATS)
        own = self.state_dict()
        taken = {k: state[f"classifier.{k}"] for k in own if f"classifier.{k}" in state}
        missing = sorted(k for k in own if k not in taken and "rel_pos" not in k
                         and k != "positional_emb")
        if missing:
            raise ValueError(f"{path} has no classifier.{missing[0]} (and {len(missing) - 1} "
                             "more) for the temporal branch")
        self.load_state_dict(taken, strict=False)

    def freeze(self, freeze: int | None) -> None:
        """The authors' ``--freeze_te_tatt``, with the semantics of ``--freeze_te``
        (:func:`~..encoders.cct.freeze_te`): the norm (and a position table) freeze
        with blocks 0..freeze."""
        freeze_te(self, self.blocks, freeze, "freeze_temporal")

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """[(B T), N, C] tokenizer tokens -> [(B T), N, C]."""
        x = patches if self.positional_emb is None else patches + self.positional_emb
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class STformer(Aggregator):
    """[B, L, N, 2C] (each frame's spatial-branch tokens and tokenizer tokens, as
    ``cct*`` with ``output='tokens+patches'`` gives them) -> [B, K*C]. The temporal
    attention spans ``temporal_frames`` frames (default L); L must be a multiple."""

    input_kind = "tokens+patches"

    def __init__(self, length: int, in_dim: int, grid: tuple[int, int], heads: int = 6,
                 temporal_layers: int = 4, window: int = 6, stride: int = 3,
                 relative_positions: bool = True, clusters: int = 64,
                 freeze_temporal: int | None = None, temporal_frames: int | None = None
                 ) -> None:
        super().__init__()
        span = int(temporal_frames or length)
        if length < 1 or span < 1 or length % span:
            raise ValueError(f"stformer needs a window length that is a positive multiple of "
                             f"the {span} frames its space-time attention spans, got {length}")
        if in_dim % 2:
            raise ValueError(f"stformer takes [N, 2C] frame features, got {in_dim} channels")
        self.length, self.grid, self.dim = int(length), tuple(grid), in_dim // 2
        # [(B L), N, C] frames in (b s) order: the attention takes runs of `span` frames
        self.temporal = TemporalBranch(self.dim, heads, temporal_layers, span,
                                       self.grid, window, stride, relative_positions)
        self.temporal.freeze(freeze_temporal)
        self.vlad = NetVLAD(self.dim, clusters)

    def out_dim(self, in_dim: int) -> int:
        return self.vlad.clusters * self.vlad.dim

    def init_from_features(self, features: torch.Tensor, seed: int = 0) -> None:
        """SeqVLAD centres from the spatial-branch tokens, as the authors do
        (``STEcoder.forward_seqvlad``)."""
        self.vlad.init_from_features(features[..., :self.dim], seed)

    def branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, L, N, 2C] -> the spatial and the temporal tokens, each [B, L, N, C]."""
        self.check_length(x.shape[1])
        spatial, patches = x.split(self.dim, dim=-1)
        temporal = self.temporal(patches.flatten(0, 1)).view(spatial.shape)
        return spatial, temporal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial, temporal = self.branches(x)
        return self.vlad((spatial + temporal).flatten(1, 2))


@register_aggregator()
def stformer(in_dim: int, grid: tuple[int, int], length: int = 5, heads: int = 6,
             temporal_layers: int = 4, window: int = 6, stride: int = 3,
             relative_positions: bool = True, clusters: int = 64,
             freeze_temporal: int | None = None, temporal_frames: int | None = None,
             pretrained: bool = False, weights: str | None = None) -> STformer:
    """STformer (the authors' defaults): L = 5, 4 space-time CCT blocks of 6 heads
    on 6x6 windows with stride 3, relative positions, SeqVLAD K = 64. ``weights``:
    a CCT-14 checkpoint the temporal blocks start from (read when the model is built
    pretrained, as the encoder's); ``freeze_temporal``: the authors' --freeze_te_tatt;
    ``temporal_frames``: the frames one space-time attention spans (default L; the
    authors fix 5 and run --seq_length 10 as two runs of 5)."""
    agg = STformer(length, in_dim, grid, heads, temporal_layers, window, stride,
                   relative_positions, clusters, freeze_temporal, temporal_frames)
    path = weights_to_load("stformer temporal branch", pretrained, weights, FORMATS)
    if path is not None:
        agg.temporal.load_cct(path)
    return agg
