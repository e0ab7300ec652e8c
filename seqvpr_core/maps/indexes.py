"""Which FAISS index a map uses, and how to train, search and place it.

Index kinds map to FAISS factory strings (the string is what the manifest
stores, so any factory string a user passes works too):

- ``flat``: exact search, 4*dim bytes per entry; one query costs n*dim
  multiply-adds, so auto takes it while that meets :data:`SEARCH_BUDGET_MS`.
- ``hnsw``: graph search, no training, grows one entry at a time (good for
  slam maps); about 4*dim + 8*M bytes per entry. On maps full of near
  duplicates (revisits) its Recall@1 drops (2 points at 100k, 6 at 1M in
  benchmarks/maps.py), so auto uses it only for mid-sized maps.
- ``ivf-flat``: inverted lists of full vectors; needs training (k-means).
- ``ivf-pq``: inverted lists of product-quantised codes, about dim/8 bytes per
  entry: the city-scale choice when memory matters.
- optional ``pca`` in front (``PCA<d>,...``), learned from the map itself.

``auto`` picks by map size and descriptor size (:func:`auto_choice`, which also
says why); at city scale it also centres the descriptors with PCA and re-ranks
with 8-bit codes (:func:`index_spec`).
"""

from __future__ import annotations

import math
from typing import Any

from ..catalog import INDEX_KINDS as KINDS

SEARCH_BUDGET_MS = 1.0  # auto searches exactly while one query costs at most this
# Multiply-adds per query (entries x dims) that exact search does within the budget on
# one core of our CPU, at every descriptor size from 256 to 4096 (benchmarks/exact_search.py):
# 16 MB of descriptors, half this CPU's L3 cache; past the cache a query streams the map
# from memory and costs 5-7x more per entry (8960-d: 1,000 entries 6.3 ms).
FLAT_MAX_MACS = 4_000_000
HNSW_UP_TO = 50_000  # beyond this IVF-PQ loses less recall and uses 3-30x less memory
AUTO_PCA_DIM = 512  # auto's city-scale maps: centred by PCA to at most this many dims
HNSW_M, HNSW_EF_SEARCH, HNSW_EF_CONSTRUCTION = 32, 256, 80
MIN_POINTS_PER_CENTROID = 39  # FAISS warns below this many training points per centroid
MAX_POINTS_PER_CENTROID = 64  # training sample cap: k-means time stays bounded at 1M entries
REFINE_K_FACTOR = 4  # a refine stage re-ranks 4k candidates with its finer codes
IMBALANCE_WARN = 3.0  # k-means lists are ~1.1-1.5x uneven; far above, queries scan huge lists


def auto_choice(n: int, dim: int) -> tuple[str, str]:
    """(kind, why) for a map of ``n`` entries of ``dim`` dims: exact search while a
    query meets :data:`SEARCH_BUDGET_MS` (exact never loses recall), HNSW beyond
    for mid-sized maps (no training), IVF-PQ trained on the map at city scale."""
    macs, budget = n * dim, f"{SEARCH_BUDGET_MS:g} ms"
    size = f"{n:,} windows x {dim}-d = {macs / 1e6:.1f}M multiply-adds per query"
    limit = f"{FLAT_MAX_MACS / 1e6:.0f}M on one core"
    if macs <= FLAT_MAX_MACS:
        return "flat", f"exact search: {size}, within its {budget} budget ({limit})"
    why = f"approximate search: exact search of {size} is over its {budget} budget ({limit})"
    if n <= HNSW_UP_TO:
        return "hnsw", f"{why}; --index flat searches exactly"
    return "ivf-pq", f"{why}; beyond {HNSW_UP_TO:,} windows IVF-PQ loses less than HNSW"


def nlist_for(n: int) -> int:
    """Inverted lists: about sqrt(n), a power of two, 16..65536."""
    return int(min(65536, max(16, 2 ** round(math.log2(max(n, 1)) / 2))))


def pq_subquantizers(dim: int) -> int:
    """PQ code size in bytes: dim/8 (64 bytes at 512-d), a divisor of dim."""
    m = max(1, dim // 8)
    while dim % m:
        m -= 1
    return m


def index_spec(kind: str, dim: int, n: int, pca: int | None = None, metric: str = "ip") -> str:
    """FAISS factory string for ``kind`` and an expected map size ``n``.

    With ``pca`` and inner product, projected vectors are L2-normalised again so
    scores stay cosines. When ``auto`` picks IVF-PQ it puts PCA in front (to at
    most :data:`AUTO_PCA_DIM` dims unless ``pca`` says otherwise, with a random
    rotation so the PQ sub-vectors share the variance) and re-ranks the candidates
    with SQ8 codes of the original descriptors (scores stay their cosines). Raw
    descriptors of our CNN models sit in a narrow cone (GeM of ReLU maps), and
    uncentred k-means fills a few huge lists: on 100k raw Lite0+SeqGeM windows
    (``benchmarks/maps.py --raw``) plain IVF-PQ takes 6.4 ms per query and loses
    17 points of Recall@1 (lists 35x uneven); this index 0.31 ms and none.
    """
    if kind not in KINDS:
        raise ValueError(f"index kind must be one of {KINDS}, got {kind!r}")
    if pca is not None and not 1 <= pca <= dim:
        raise ValueError(f"pca must be 1..{dim} (the descriptor size), got {pca}")
    pca_stage, refine = "PCA", ""
    if kind == "auto":
        kind = auto_choice(n, pca or dim)[0]
        if kind == "ivf-pq":
            pca, pca_stage, refine = pca or min(dim, AUTO_PCA_DIM), "PCAR", ",Refine(SQ8)"
    d = pca or dim
    body = {
        "flat": "Flat",
        "hnsw": f"HNSW{HNSW_M}",
        "ivf-flat": f"IVF{nlist_for(n)},Flat",
        "ivf-pq": f"IVF{nlist_for(n)},PQ{pq_subquantizers(d)}np",  # np: skip polysemous training
    }[kind] + refine
    if not pca:
        return body
    return f"{pca_stage}{pca},{'L2norm,' if metric == 'ip' else ''}{body}"


def train_size(index: Any) -> int:
    """Fewest entries that train ``index`` well (0 when it needs no training)."""
    faiss = _faiss()
    if index.is_trained:
        return 0
    need = 1
    for stage in _transforms(index):
        need = max(need, stage.d_out + 1)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        need = max(need, MIN_POINTS_PER_CENTROID * ivf.nlist)
        pq = getattr(faiss.downcast_index(ivf), "pq", None)
        if pq is not None:
            need = max(need, MIN_POINTS_PER_CENTROID * pq.ksub)
    return need


def training_cap(index: Any) -> int:
    """Most entries worth training on: more only slows k-means down."""
    faiss = _faiss()
    need = train_size(index)
    ivf = faiss.try_extract_index_ivf(index)
    cap = MAX_POINTS_PER_CENTROID * ivf.nlist if ivf is not None else need
    return max(need, cap, 4 * need)


def list_imbalance(index: Any) -> float | None:
    """How unevenly entries fill the inverted lists (1 = even; None: no lists).

    A query costs what its probed lists hold: descriptors crowded in a narrow
    cone (uncentred, non-negative features such as GeM of ReLU maps) pile into
    a few lists, and search gets slower than exact (10k Lite0+SeqGeM windows:
    imbalance 6.4, one list of 1396). PCA in front centres them."""
    ivf = _faiss().try_extract_index_ivf(index)
    if ivf is None or ivf.ntotal == 0:
        return None
    return float(ivf.invlists.imbalance_factor())


def drop_training_state(index: Any) -> None:
    """Free what only training needed: a PCA stage keeps its full eigenvector
    matrix (input dims x input dims, 2.4 GB at 24576-d) besides the projection
    it applies; searches and saved maps need only the projection."""
    faiss = _faiss()
    for stage in _transforms(index):
        if isinstance(stage, faiss.PCAMatrix):
            stage.PCAMat.clear()
            stage.eigenvalues.clear()


def tune(index: Any, nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Search-time knobs: IVF lists probed, HNSW candidate list size, refine depth."""
    faiss = _faiss()
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = nprobe or max(ivf.nprobe, min(ivf.nlist, max(8, ivf.nlist // 128)))
    hnsw = _hnsw(index)
    if hnsw is not None:
        hnsw.hnsw.efSearch = ef_search or max(hnsw.hnsw.efSearch, HNSW_EF_SEARCH)
        hnsw.hnsw.efConstruction = max(hnsw.hnsw.efConstruction, HNSW_EF_CONSTRUCTION)
    refine = _unwrap(index, stop_at_refine=True)
    if isinstance(refine, faiss.IndexRefine):
        refine.k_factor = max(refine.k_factor, REFINE_K_FACTOR)


def search_params(index: Any, max_id: int) -> Any:
    """Parameters restricting a search to ids < max_id, for any index type.

    Each index type reads its own parameter class (nested through PCA and refine
    stages), and passing parameters overrides the index's nprobe/efSearch/k_factor,
    so they are copied in.
    """
    faiss = _faiss()
    sel = faiss.IDSelectorRange(0, max(0, max_id))
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        inner = search_params(index.index, max_id)
        params = faiss.SearchParametersPreTransform(index_params=inner)
    elif isinstance(index, faiss.IndexRefine):
        inner = search_params(index.base_index, max_id)
        params = faiss.IndexRefineSearchParameters(base_index_params=inner,
                                                   k_factor=index.k_factor)
    else:
        inner = None
        if isinstance(index, faiss.IndexIVF):
            params = faiss.SearchParametersIVF(sel=sel, nprobe=index.nprobe)
        elif isinstance(index, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=index.hnsw.efSearch)
        else:
            params = faiss.SearchParameters(sel=sel)
    # SWIG keeps no Python references: the returned object holds what it points to
    params.seqvpr_refs = (sel, inner)
    return params


def to_gpu(index: Any) -> Any | None:
    """A GPU copy of ``index`` when FAISS has GPU support and a GPU is present.

    HNSW has no GPU implementation; it (and any index FAISS cannot clone)
    stays on the CPU and None is returned.
    """
    faiss = _faiss()
    if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
        return None
    if _hnsw(index) is not None:
        return None
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError:
        return None


def _unwrap(index: Any, stop_at_refine: bool = False) -> Any:
    """The index under PCA (and, unless asked to stop there, refine) stages."""
    faiss = _faiss()
    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexPreTransform) or (
            isinstance(index, faiss.IndexRefine) and not stop_at_refine):
        inner = index.index if isinstance(index, faiss.IndexPreTransform) else index.base_index
        index = faiss.downcast_index(inner)
    return index


def _transforms(index: Any) -> list[Any]:
    """Every vector transform (PCA, L2norm, ...) in front of the index, also under
    a Refine stage, which FAISS's factory puts outermost."""
    faiss = _faiss()
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexRefine):
        index = faiss.downcast_index(index.base_index)
    if not isinstance(index, faiss.IndexPreTransform):
        return []
    return [faiss.downcast_VectorTransform(index.chain.at(i)) for i in range(index.chain.size())]


def _hnsw(index: Any) -> Any | None:
    index = _unwrap(index)
    return index if isinstance(index, _faiss().IndexHNSW) else None


def _faiss():
    from .place_map import _faiss as load

    return load()
