"""When exact search is fast enough: what ``--index auto`` keeps exact, and why.

    python benchmarks/exact_search.py [--budget-ms 1.0] [--threads 1]

1. Exact (flat) search, ms per single query (a robot asks one at a time) against
   map entries x descriptor size, on random unit vectors (flat search costs the
   same on any data). Prints, per descriptor size, the largest map exact search
   answers within the budget (interpolated between the measured sizes) and its
   multiply-adds per query (entries x dims): :data:`seqvpr_core.maps.indexes.FLAT_MAX_MACS`.
2. Real descriptors of the demo model (``seqvpr_core/configs/nordland_lite0_cat.yaml``,
   EfficientNet-Lite0 grid features concatenated over 10 frames: 8960-d): the
   summer map of the first 1,176 frames (1,167 windows) and of all 2,400 (2,391)
   plus noisy copies up to 10k, searched by the winter windows, exact against
   HNSW32 as auto builds it: ms per query, Recall@1 (seq2seq, tolerance 1) and
   the distances HNSW computes per query: what approximate search saves on a map
   too large for the budget, and the recall it costs.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
from _common import ROOT, cached, encode_season, parser, positives, report_load, setup

DIMS = (256, 512, 896, 2048, 4096, 8960, 24576)
MAX_BYTES = 1.2e9  # largest random map built in part 1
LENGTH = 10


def single_query_ms(index, xq: np.ndarray, repeat: int) -> float:
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        index.search(xq[i % len(xq)][None], 20)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def exact_grid(budget_ms: float, repeat: int) -> None:
    import faiss

    rng = np.random.default_rng(0)
    print(f"\n1. exact search, ms per query (median of {repeat}); budget {budget_ms} ms")
    sizes = [125, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000]
    print(f"{'dim':>6s} " + " ".join(f"{n:>8d}" for n in sizes) + "   size at the budget")
    limits = []
    for d in DIMS:
        row, times = [], []
        for n in sizes:
            if n * d * 4 > MAX_BYTES:
                row.append(" " * 8)
                continue
            xb = rng.standard_normal((n, d), dtype=np.float32)
            faiss.normalize_L2(xb)
            index = faiss.IndexFlatIP(d)
            index.add(xb)
            ms = single_query_ms(index, rng.standard_normal((32, d), dtype=np.float32), repeat)
            row.append(f"{ms:8.3f}")
            times.append((n, ms))
            del index, xb
        n_at = _at_budget(times, budget_ms)
        if n_at is not None:
            limits.append(n_at * d)
        note = "-" if n_at is None else f"{n_at:.0f} entries ({n_at * d / 1e6:.1f}M MACs)"
        print(f"{d:6d} " + " ".join(row) + f"   {note}", flush=True)
    print(f"exact search meets {budget_ms} ms up to {min(limits) / 1e6:.1f}-"
          f"{max(limits) / 1e6:.1f}M multiply-adds per query (median "
          f"{float(np.median(limits)) / 1e6:.1f}M) across descriptor sizes")


def _at_budget(times: list[tuple[int, float]], budget_ms: float) -> float | None:
    """Map size where exact search reaches the budget, interpolated on log scales
    between the two measured sizes around it (None: not bracketed)."""
    for (n1, t1), (n2, t2) in itertools.pairwise(times):
        if t1 <= budget_ms < t2:
            return n1 * (n2 / n1) ** (np.log(budget_ms / t1) / np.log(t2 / t1))
    return None


def demo_descriptors() -> tuple[np.ndarray, np.ndarray]:
    """(summer windows [2391, 8960], winter windows [2391, 8960]) of the demo model."""
    from seqvpr_core.models import build_model
    from seqvpr_core.stream import FrameInfo, LocalizerConfig, StreamingLocalizer, WindowConfig

    model = build_model(ROOT / "seqvpr_core" / "configs" / "nordland_lite0_cat.yaml")
    import torch

    from seqvpr_core.maps import PlaceMap

    def windows(season: str) -> np.ndarray:
        feats = cached(f"lite0grid_{season}", lambda: encode_season(model, season))
        loc = StreamingLocalizer(model, PlaceMap(model.descriptor_dim),
                                 LocalizerConfig("mapping", WindowConfig.fixed(LENGTH)))
        infos = [FrameInfo(i, i) for i in range(len(feats))]
        return np.stack([r.descriptor for r in loc.push_features(torch.from_numpy(feats),
                                                                 infos)])

    return windows("summer"), windows("winter")


def exact_vs_hnsw(repeat: int) -> None:
    import faiss

    from seqvpr_core.eval import recall_at_k
    from seqvpr_core.maps import PlaceMap
    from seqvpr_core.maps.indexes import index_spec

    db, xq = demo_descriptors()
    every = positives(len(xq), len(db), LENGTH)
    print(f"\n2. demo model, {db.shape[1]}-d real descriptors, {len(xq)} winter queries")
    print(f"{'entries':>8s} {'index':>8s} {'ms/query':>9s} {'R@1':>6s} {'distances/query':>16s}")
    rng = np.random.default_rng(0)
    for n in (1167, 2391, 4782, 9564):
        xb = db[:n] if n <= len(db) else np.concatenate(
            [db] + [_noisy(db, rng) for _ in range(n // len(db) - 1)])
        # queries whose positives lie in the map (the first n windows, mod copies)
        ask = np.arange(min(n, len(xq)))
        pos = [every[i] for i in ask]
        for kind in ("flat", "hnsw"):
            m = PlaceMap(db.shape[1], index_spec=index_spec(kind, db.shape[1], n))
            m.index.add(xb)  # flat and HNSW need no training
            ids = m.search(xq[ask], 1)[1] % len(db)
            r1 = recall_at_k(ids, pos, (1,))[1]
            faiss.cvar.hnsw_stats.reset()
            ms = single_query_ms(m.searched_index, xq[ask], repeat)
            ndis = faiss.cvar.hnsw_stats.ndis / repeat if kind == "hnsw" else n
            print(f"{n:8d} {kind:>8s} {ms:9.3f} {100 * r1:6.2f} {ndis:16.0f}", flush=True)


def _noisy(base: np.ndarray, rng) -> np.ndarray:
    x = base + 0.5 * rng.standard_normal(base.shape).astype(np.float32) / np.sqrt(base.shape[1])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--budget-ms", type=float, default=1.0, help="ms per query exact must meet")
    p.add_argument("--repeat", type=int, default=30, help="single queries timed per cell")
    p.add_argument("--skip-grid", action="store_true", help="only part 2")
    args = p.parse_args()
    setup(args.threads)
    if not args.skip_grid:
        exact_grid(args.budget_ms, args.repeat)
    exact_vs_hnsw(args.repeat)
    report_load()


if __name__ == "__main__":
    main()
