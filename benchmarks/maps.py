"""Map search at city scale: HNSW, IVF-Flat and IVF-PQ against exact search, side by side.

    python benchmarks/maps.py [--sizes 100000 1000000] [--queries 2391] [--threads 1] [--raw]

Descriptors are real: EfficientNet-Lite0 + SeqGeM over every 10-frame window of
the Nordland summer traversal (896-d, projected to 512-d by PCA fitted on those
windows; with ``--raw`` the model's own 896-d descriptors, uncentred, as
``seqvpr build-map`` meets them). The map is those windows repeated with
Gaussian noise (each copy keeps its window's place label) up to each size; the
queries are the real winter windows. For each index: build time, ms per single query (a robot asks
one at a time), Recall@1 on the seq2seq ground truth, how often the top-1 equals
exact search's, bytes per entry and how uneven the IVF lists are (1x = even).
Target at 1M: < 1 ms/query and at most 1 point of Recall@1 lost. Compared by
default: what each index kind (and ``auto``) picks for the size.
"""

from __future__ import annotations

import time

import numpy as np
from _common import (
    LITE0_SEQGEM,
    cached,
    encode_season,
    parser,
    positives,
    report_load,
    setup,
    window_descriptors,
)

LENGTH, DIM, NOISE = 10, 512, 0.5  # noise norm relative to a unit descriptor


def real_descriptors(raw: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(map windows [2391, D], winter query windows [2391, D]), unit length; D is
    512, or the model's 896 when ``raw``."""
    from seqvpr_core.models import build_model

    def windows(season: str) -> np.ndarray:
        model = build_model(LITE0_SEQGEM)
        feats = cached(f"lite0_{season}", lambda: encode_season(model, season))
        return window_descriptors(model, feats, LENGTH)

    db, q = windows("summer"), windows("winter")
    if raw:
        return db, q
    mean = db.mean(0)
    _, _, vt = np.linalg.svd(db - mean, full_matrices=False)
    proj = vt[:DIM].T

    def project(x):
        y = (x - mean) @ proj
        return (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)

    return project(db), project(q)


def noisy_map(base: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` entries: copy c of window j at id c*len(base)+j; copy 0 is clean."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, len(base)):
        rows = min(len(base), n - start)
        x = base[:rows].copy()
        if start:
            noise = rng.standard_normal(x.shape).astype(np.float32)
            x += NOISE * noise / np.sqrt(base.shape[1])
            x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start:start + rows] = x
    return out


def build(spec: str, xb: np.ndarray):
    from seqvpr_core.maps import Keyframe, PlaceMap

    t0 = time.perf_counter()
    m = PlaceMap(xb.shape[1], index_spec=spec)
    kf = Keyframe(0, 0, LENGTH, 0, LENGTH - 1)  # rows are not what is measured
    for start in range(0, len(xb), 200_000):
        chunk = xb[start:start + 200_000]
        m.add(chunk, [kf] * len(chunk))
    m.train()
    return m, time.perf_counter() - t0


def measure(m, xq: np.ndarray, timed: int, k: int = 5) -> tuple[np.ndarray, float]:
    """Top-k of all queries in one batch, and the median ms of ``timed`` queries
    asked one at a time (as a robot does): (ids [Q, k], ms per query)."""
    ids = m.search(xq, k)[1]
    times = []
    for q in xq[np.linspace(0, len(xq) - 1, timed).astype(int)]:
        t0 = time.perf_counter()
        m.search(q[None], k)
        times.append(time.perf_counter() - t0)
    return ids, 1000 * float(np.median(times))


def bytes_per_entry(m) -> float:
    import faiss

    return len(faiss.serialize_index(m.searched_index)) / len(m)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--queries", type=int, default=2391,
                   help="winter windows asked for recall (evenly spaced; 2391 = all)")
    p.add_argument("--timed", type=int, default=200, help="queries timed one at a time")
    p.add_argument("--specs", nargs="+", default=None, metavar="FACTORY",
                   help="FAISS factory strings to compare with exact search (default: what "
                        "auto, hnsw, ivf-flat and ivf-pq pick for each size)")
    p.add_argument("--nprobe", type=int, nargs="+", default=None,
                   help="IVF lists probed, each measured on the same built index")
    p.add_argument("--raw", action="store_true",
                   help="the model's own uncentred 896-d descriptors instead of 512-d PCA")
    args = p.parse_args()
    setup(args.threads)
    import faiss

    from seqvpr_core.eval import recall_at_k
    from seqvpr_core.maps.indexes import index_spec, list_imbalance

    base, queries = real_descriptors(args.raw)
    pick = np.linspace(0, len(queries) - 1, args.queries).astype(int)
    xq = queries[pick]
    every = positives(len(queries), len(base), LENGTH)
    pos = [every[i] for i in pick]
    print(f"map windows {base.shape}, queries {xq.shape}, noise {NOISE}")
    print(f"{'entries':>8s} {'index':50s} {'build s':>8s} {'ms/query':>9s} {'R@1':>6s} "
          f"{'R@1 loss':>9s} {'=exact':>7s} {'B/entry':>8s} {'lists':>6s}")
    for n in args.sizes:
        xb = noisy_map(base, n)
        exact_ids = None
        kinds = ("auto", "hnsw", "ivf-flat", "ivf-pq")
        specs = args.specs or list(dict.fromkeys(index_spec(k, base.shape[1], n) for k in kinds))
        for spec in ["Flat", *specs]:
            m, build_s = build(spec, xb)
            ivf = faiss.try_extract_index_ivf(m.searched_index)
            for nprobe in (args.nprobe or [None]) if ivf is not None else [None]:
                if nprobe:
                    ivf.nprobe = nprobe
                # exact search is slow one query at a time: time a few
                timed = min(args.timed, 20) if spec == "Flat" else args.timed
                ids, ms = measure(m, xq, timed)
                r1 = recall_at_k(ids % len(base), pos, (1,))[1]
                if exact_ids is None:
                    exact_ids, exact_r1 = ids, r1
                same = float(np.mean(ids[:, 0] == exact_ids[:, 0]))
                name = spec + (f" nprobe={ivf.nprobe}" if ivf is not None else "")
                imbalance = list_imbalance(m.searched_index)
                print(f"{n:8d} {name:50s} {build_s:8.1f} {ms:9.3f} {100 * r1:6.2f} "
                      f"{100 * (exact_r1 - r1):9.2f} {100 * same:6.1f}% "
                      f"{bytes_per_entry(m):8.0f} "
                      f"{'-' if imbalance is None else f'{imbalance:.1f}x':>6s}", flush=True)
            del m
        del xb
    report_load()


if __name__ == "__main__":
    main()
