"""Map index types: every kind finds the exact neighbour on easy data, honours
``max_id`` and round-trips through save/load; untrained maps search exactly."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from seqvpr_core.maps import Keyframe, MapFormatError, PlaceMap
from seqvpr_core.maps.indexes import auto_choice, index_spec, train_size

DIM, N = 32, 2000  # 4-bit PQ (16 centroids) trains on a few hundred entries: fast tests

SPECS = ["Flat", "HNSW32", "IVF16,Flat", "IVF16,PQ16x4np", "PCA16,L2norm,Flat",
         "PCA16,L2norm,IVF16,PQ8x4np", "IVF16,PQ8x4np,Refine(SQ8)", "PCA16,L2norm,HNSW32",
         "PCAR16,L2norm,IVF16,PQ8x4np,Refine(SQ8)"]  # the last: auto's city-scale shape


def _data(n: int = N, seed: int = 0) -> np.ndarray:
    """Unit vectors near a 12-d subspace: PCA to 16 dims keeps what tells them apart."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((DIM, 12)))[0].T  # [12, DIM]
    x = rng.standard_normal((n, 12)) @ basis + 0.02 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _keyframes(n: int) -> list[Keyframe]:
    return [Keyframe(i * 10, i * 10 + 5, 5, i, i + 4) for i in range(n)]


def _map(spec: str, xb: np.ndarray, metric: str = "ip") -> PlaceMap:
    m = PlaceMap(DIM, metric, model={"name": "test"}, index_spec=spec)
    m.add(xb, _keyframes(len(xb)))
    m.train()
    return m


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread():
    """FAISS's OpenMP k-means runs 100x slower on a CPU shared with other jobs."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def xb() -> np.ndarray:
    return _data()


@pytest.fixture(scope="module", params=SPECS)
def built(request, xb) -> PlaceMap:
    return _map(request.param, xb)


def _top1_rate(spec: str) -> float:
    """PQ codes are lossy: the entry itself must be among the first five, and first
    for most queries; every other index finds it first."""
    return 0.8 if "PQ" in spec else 1.0


def test_exact_neighbour_on_easy_data(built, xb):
    """A query equal to a map entry finds that entry."""
    ids = np.arange(0, N, 97)
    _, I = built.search(xb[ids], 5)
    assert built.trained
    assert (ids[:, None] == I).any(axis=1).all(), built.index_spec
    assert (I[:, 0] == ids).mean() >= _top1_rate(built.index_spec), built.index_spec


def test_max_id_is_honoured(built, xb):
    """Only ids below max_id come back, and the best of them is still found."""
    max_id = 800
    ids = np.arange(0, max_id, 41)
    _, I = built.search(xb[ids], 10, max_id=max_id)
    assert I.max() < max_id and (I >= 0).all()
    assert (ids[:, None] == I).any(axis=1).all(), built.index_spec
    assert (I[:, 0] == ids).mean() >= _top1_rate(built.index_spec), built.index_spec
    # queries whose true neighbour is excluded never return it
    _, I = built.search(xb[[1500, 1900]], 10, max_id=max_id)
    assert I.max() < max_id
    _, I = built.search(xb[:2], 3, max_id=0)
    assert (I == -1).all()


def test_save_load_round_trip(built, xb, tmp_path):
    """A saved map validates on load and answers exactly as before."""
    path = built.save(tmp_path / "map")
    loaded = PlaceMap.load(path)
    assert loaded.index_spec == built.index_spec and len(loaded) == N and loaded.trained
    q = xb[:50]
    np.testing.assert_array_equal(loaded.search(q, 5)[1], built.search(q, 5)[1])
    np.testing.assert_array_equal(loaded.search(q, 5, max_id=600)[1],
                                  built.search(q, 5, max_id=600)[1])


@pytest.mark.parametrize("spec", ["PCA16,L2norm,Flat", "PCA16,L2norm,IVF16,Flat,Refine(SQ8)"])
def test_pca_keeps_only_its_projection(xb, spec):
    """The trained PCA stage drops its eigenvector matrix, also under a re-ranking
    stage (FAISS puts Refine outermost); searches are unchanged."""
    m = _map(spec, xb)
    index = faiss.downcast_index(m.index)
    if isinstance(index, faiss.IndexRefine):
        index = faiss.downcast_index(index.base_index)
    pca = faiss.downcast_VectorTransform(index.chain.at(0))
    assert pca.PCAMat.size() == 0 and pca.A.size() == 16 * DIM
    assert (m.search(xb[:20], 1)[1][:, 0] == np.arange(20)).all()


def test_l2_metric(xb):
    for spec in ("Flat", "HNSW32", "IVF16,Flat"):
        m = _map(spec, xb, metric="l2")
        assert (m.search(xb[:20], 1)[1][:, 0] == np.arange(20)).all(), spec


def test_untrained_map_is_exact_and_trains_when_it_grows(xb, tmp_path):
    """Too few entries to train: exact flat search, saved and reloaded as such;
    more entries later train the index."""
    m = PlaceMap(DIM, index_spec="IVF16,PQ8x4np")
    m.add(xb[:300], _keyframes(300))
    assert not m.trained
    assert (m.search(xb[:300:30], 1)[1][:, 0] == np.arange(0, 300, 30)).all()
    loaded = PlaceMap.load(m.save(tmp_path / "small"))
    assert not loaded.trained and len(loaded) == 300
    manifest = json.loads((tmp_path / "small" / "manifest.json").read_text())
    assert manifest["index"] == "IVF16,PQ8x4np" and manifest["trained"] is False
    loaded.add(xb[300:], _keyframes(N - 300))
    loaded.save(tmp_path / "small")  # enough entries now: trained on save
    again = PlaceMap.load(tmp_path / "small")
    assert again.trained and len(again) == N
    I = again.search(xb[:1000:100], 5)[1]
    assert (np.arange(0, 1000, 100)[:, None] == I).any(axis=1).all()


def test_growing_map_trains_itself(xb):
    """A slam map grows past 4x the training size and leaves the staging index."""
    m = PlaceMap(DIM, index_spec="IVF16,Flat")
    need = train_size(m.index)
    for start in range(0, 4 * need, 100):
        assert not m.trained
        m.add(_data(100, seed=start + 1), _keyframes(100))
    assert m.trained and len(m) >= 4 * need


def test_training_needs_enough_entries(xb):
    m = PlaceMap(DIM, index_spec="IVF16,PQ8")  # 8-bit PQ: 256 centroids x 39 points
    m.add(xb[:100], _keyframes(100))
    with pytest.raises(ValueError, match="needs at least 9984 entries"):
        m.train()


def test_damaged_index_is_refused(built, tmp_path):
    path = built.save(tmp_path / "map")
    with (path / "index.faiss").open("r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff")
    with pytest.raises(MapFormatError, match="damaged"):
        PlaceMap.load(path)


def test_index_spec_choices():
    assert auto_choice(1000, 512)[0] == "flat" and auto_choice(10_000, 512)[0] == "hnsw"
    assert auto_choice(1_000_000, 512)[0] == "ivf-pq"
    assert index_spec("ivf-pq", 512, 1_000_000) == "IVF1024,PQ64np"
    # auto at city scale: PCA (+ rotation) in front centres coned descriptors; SQ8 re-ranks
    assert index_spec("auto", 896, 1_000_000) == "PCAR512,L2norm,IVF1024,PQ64np,Refine(SQ8)"
    assert index_spec("auto", 256, 100_000, metric="l2") == "PCAR256,IVF256,PQ32np,Refine(SQ8)"
    assert index_spec("auto", 896, 100_000, pca=128) == "PCAR128,L2norm,IVF256,PQ16np,Refine(SQ8)"
    assert index_spec("hnsw", 512, 10, pca=128) == "PCA128,L2norm,HNSW32"
    assert index_spec("flat", 512, 10, pca=128, metric="l2") == "PCA128,Flat"
    with pytest.raises(ValueError, match="index kind must be one of"):
        index_spec("lsh", 512, 10)
    with pytest.raises(ValueError, match="FAISS cannot build index"):
        PlaceMap(DIM, index_spec="NotAnIndex")


@pytest.mark.parametrize("kind,expected", [("auto", "Flat"), ("hnsw", "HNSW32"),
                                           ("ivf-pq", "IVF16,PQ")])
def test_build_map_index_option(nordland, tmp_path, capsys, kind, expected):
    """build-map says which index it chose and the map loads with it; an IVF-PQ map
    too small to train is saved exact (flat staging) and still loads."""
    from seqvpr_core.cli.main import main

    out = tmp_path / "map"
    assert main(["build-map", "--images", str(nordland / "summer"), "--model", "pixels+avg",
                 "--window", "3", "--index", kind, "--out", str(out)]) == 0
    assert f"index: {expected}" in capsys.readouterr().out
    loaded = PlaceMap.load(out)
    assert loaded.index_spec.startswith(expected) and len(loaded) > 0


def test_searches_go_to_the_gpu_copy_when_faiss_has_a_gpu(monkeypatch):
    """faiss-cpu has no GPU: stand in for index_cpu_to_all_gpus with a clone and
    check the wiring (searched through the copy, kept in sync on add, ID-filtered
    and HNSW searches on the CPU, dropped when training moves the entries)."""
    copies = []

    def to_all_gpus(index):
        copies.append(faiss.clone_index(index))
        return copies[-1]

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", to_all_gpus, raising=False)
    xb = _data()
    m = PlaceMap(DIM, model={"name": "test"}, index_spec="IVF16,Flat")
    m.add(xb[:1000], _keyframes(1000))
    m.search(xb[:3], 1)
    assert len(copies) == 1 and copies[0].ntotal == 1000  # the staging index, copied
    m.add(xb[1000:1100], _keyframes(100))
    assert copies[0].ntotal == 1100  # kept in sync
    m.train()
    _, ids = m.search(xb[1050:1060], 1)
    assert len(copies) == 2 and copies[1].ntotal == 1100  # a fresh copy of the trained index
    assert (ids[:, 0] == np.arange(1050, 1060)).all()
    _, ids = m.search(xb[1050:1060], 1, max_id=500)  # selectors stay on the CPU
    assert (ids < 500).all() and len(copies) == 2

    hnsw = _map("HNSW32", xb[:500])
    hnsw.search(xb[:3], 1)
    assert len(copies) == 2  # no GPU HNSW: searched on the CPU


def test_uneven_inverted_lists_are_reported(caplog):
    """Most entries in one tight cone (revisits of one place, uncentred features):
    k-means piles them into a few lists and the map says so with the fix."""
    rng = np.random.default_rng(1)
    spread = _data(300)
    crowd = spread[0] + 0.001 * rng.standard_normal((1700, DIM)).astype(np.float32)
    crowd /= np.linalg.norm(crowd, axis=1, keepdims=True)
    with caplog.at_level("WARNING", logger="seqvpr_core.maps.place_map"):
        _map("IVF16,Flat", np.concatenate([spread, crowd]))
    assert "uneven" in caplog.text and "--pca" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="seqvpr_core.maps.place_map"):
        _map("IVF16,Flat", _data())
    assert "uneven" not in caplog.text
