"""MSLS reader on a fixture tree in the official layout (real JPEG frames, real CSV headers)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import DEMO_DATA

from seqvpr_core.data.pairs import read_dataset
from seqvpr_core.data.readers.msls import PROTOCOLS
from seqvpr_core.data.windows import make_windows, sequence_bounds

FRAMES = sorted((DEMO_DATA / "summer").glob("*.png"))
E0, N0 = 347000.0, 6180000.0  # UTM metres (Copenhagen-like)


def _side(folder: Path, rows: list[dict], shuffle: bool = True) -> None:
    """Write images/<key>.jpg and the three CSVs with the release's headers (a leading
    unnamed index column) for ``rows`` of key, seq, frame, e, n, ca, night, pano."""
    (folder / "images").mkdir(parents=True)
    order = list(range(len(rows)))
    if shuffle:  # the reader must sort frames itself
        order = order[1::2] + order[::2]
    seq, post, raw = [",key,sequence_key,frame_number"], \
        [",key,easting,northing,unique_cluster,control_panel,night,view_direction"], \
        [",key,lon,lat,ca,captured_at,pano"]
    for i, j in enumerate(order):
        r = rows[j]
        cv2.imwrite(str(folder / "images" / f"{r['key']}.jpg"), cv2.imread(str(FRAMES[j])))
        seq.append(f"{i},{r['key']},{r['seq']},{r['frame']}")
        post.append(f"{i},{r['key']},{r['e']},{r['n']},0,False,{r['night']},Forward")
        raw.append(f"{i},{r['key']},12.5,55.6,{r['ca']},2019-06-0{1 + r['frame'] % 9}_10-00-00,"
                   f"{r['pano']}")
    for name, lines in (("seq_info.csv", seq), ("postprocessed.csv", post), ("raw.csv", raw)):
        (folder / name).write_text("\n".join(lines) + "\n")


def _rows(prefix: str, seqs: dict[str, int], y: float = 0.0, night: tuple[str, ...] = (),
          panos: tuple[str, ...] = (), gap: float = 0.0) -> list[dict]:
    rows, x = [], 0.0
    for s, (seq, n) in enumerate(seqs.items()):
        x += gap * (s > 0)  # sequences ``gap`` metres apart along the street
        for f in range(n):
            key = f"{prefix}{seq}{f}"
            rows.append(dict(key=key, seq=seq, frame=f, e=E0 + x, n=N0 + y, ca=90.0,
                             night=key in night, pano=key in panos))
            x += 5.0
    return rows


def make_city(root: Path, city: str, gap: float = 0.0) -> None:
    """database: sequence A (6 frames) and B (5 frames, a panorama in the middle);
    query: sequence Q (5 frames, the last at night) 1 m beside A."""
    base = root / "train_val" / city
    _side(base / "database", _rows("d", {"A": 6, "B": 5}, panos=("dB2",), gap=gap))
    _side(base / "query", _rows("q", {"Q": 5}, y=1.0, night=("qQ4",)))


@pytest.fixture
def msls(tmp_path) -> Path:
    for city in ("cph", "sf", "melbourne"):
        make_city(tmp_path, city)
    return tmp_path


def test_msls_frames_positions_headings_and_sequences(msls):
    pair = read_dataset("msls", msls, cities={"test": ["cph"]})["test"][0]
    db, q = pair.db, pair.query
    assert len(db) == 10 and len(q) == 5  # the panorama dB2 is dropped
    assert [p.name for p in db.paths[:6]] == [f"dA{i}.jpg" for i in range(6)]
    assert all(p.is_file() for p in db.paths + q.paths)
    np.testing.assert_allclose(db.positions[:6, 0] - E0, np.arange(6) * 5.0)
    np.testing.assert_allclose(q.positions[:, 1] - N0, 1.0)
    np.testing.assert_allclose(db.headings, 90.0)
    # A, then B cut in two where the panorama left a gap in the frame numbers
    assert sequence_bounds(len(db), db.sequence_ids).tolist() == [[0, 6], [6, 8], [8, 10]]
    assert (np.diff(q.stamps_ns[:2]) > 0).all()


def test_msls_windows_never_cross_sequences(msls):
    db = read_dataset("msls", msls, cities={"test": ["cph"]})["test"][0].db
    w = make_windows(len(db), 2, 1, sequence_ids=db.sequence_ids)
    assert (db.sequence_ids[w] == db.sequence_ids[w[:, :1]]).all()
    assert len(w) == 5 + 1 + 1
    assert make_windows(len(db), 3, 1, sequence_ids=db.sequence_ids).tolist() == \
        [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]]  # B's halves are too short


def test_msls_protocols_are_the_papers_splits(msls):
    seqvpr = PROTOCOLS["seqvpr"]
    assert seqvpr["test"] == ["cph", "sf"] and seqvpr["val"] == ["amsterdam", "manila"]
    assert len(seqvpr["train"]) == 20 and not {"amsterdam", "manila"} & set(seqvpr["train"])
    assert PROTOCOLS["melbourne"]["train"] == ["melbourne"]
    with pytest.raises(ValueError, match="no city folder train_val/trondheim"):
        read_dataset("msls", msls)  # the seqvpr protocol needs every city on disk
    splits = read_dataset("msls", msls, cities={"train": ["melbourne"], "test": ["cph", "sf"]})
    assert [p.name for p in splits["test"]] == ["msls test: cph", "msls test: sf"]


def test_msls_reads_a_split_only_when_used_and_names_missing_columns(msls):
    raw = msls / "train_val" / "melbourne" / "query" / "raw.csv"
    raw.write_text(raw.read_text().replace(",ca,", ",heading,"))
    splits = read_dataset("msls", msls, cities={"train": ["melbourne"], "test": ["cph"]})
    assert len(splits["test"][0].db) == 10  # the broken train city is not parsed
    with pytest.raises(ValueError, match=r"raw.csv lacks column\(s\) \['ca'\]"):
        splits["train"]


def test_msls_wrong_layout_names_the_missing_file(tmp_path, msls):
    (msls / "train_val" / "sf" / "database" / "seq_info.csv").unlink()
    with pytest.raises(ValueError, match="missing train_val/sf/database/seq_info.csv"):
        read_dataset("msls", msls, cities={"test": ["sf"]})
    with pytest.raises(ValueError, match="no train_val/ folder"):
        read_dataset("msls", tmp_path / "train_val" / "cph")


def test_msls_night_queries(msls):
    pair = read_dataset("msls", msls, cities={"test": ["cph"]}, queries="night")["test"][0]
    assert [p.name for p in pair.query.paths] == ["qQ4.jpg"] and len(pair.db) == 10


def _two_city_config(msls, tmp_path):
    """A data config testing on two MSLS cities (cph, sf): two pairs to pool."""
    cfg = tmp_path / "msls.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"encoder": {"name": "pixels"}, "aggregator": {"name": "seqgem"}},
        "data": {"reader": "msls", "root": str(msls),
                 "options": {"cities": {"test": ["cph", "sf"]}}},
        "output": str(tmp_path / "run"),
        "ground_truth": {"pos_radius": 10.0, "eval_radius": 25.0}}))
    return cfg


def test_seqvpr_eval_on_msls_restarts_the_stream_at_every_sequence(msls, tmp_path):
    from seqvpr_core.cli.main import main

    cfg = _two_city_config(msls, tmp_path)
    out = tmp_path / "report.json"
    assert main(["eval", "--data", str(cfg), "--split", "test", "--model", "pixels+seqgem",
                 "--window", "2", "--radius", "25", "--json", str(out), "--reverse",
                 "--examples", "0"]) == 0
    report = json.loads(out.read_text())
    first = report["pairs"][0]
    assert first["db"]["sequences"] == 3 and first["query"]["sequences"] == 1
    assert first["queries"] == 4  # 5 query frames in one sequence, windows of 2
    assert report["recall"]["seq2seq"]["1"] >= report["recall"]["current"]["1"] > 0.0


def test_evaluate_maps_every_sequence_and_keeps_frame_spans(msls):
    import torch

    from seqvpr_core.eval import GroundTruth, evaluate
    from seqvpr_core.eval.evaluate import encode_traversal
    from seqvpr_core.models import build_model
    from seqvpr_core.stream import WindowConfig

    pair = read_dataset("msls", msls, cities={"test": ["cph"]})["test"][0]
    model = build_model("pixels+seqgem", window=2)
    db, q = (encode_traversal(model, t, progress=False)[:2] for t in (pair.db, pair.query))
    r = evaluate(model, db, q, WindowConfig.fixed(2), GroundTruth(radius=6.0),
                 db_positions=pair.db.positions, query_positions=pair.query.positions,
                 db_sequences=pair.db.sequence_ids, query_sequences=pair.query.sequence_ids)
    ids = pair.db.sequence_ids
    assert r.n_db_windows == 7 and (ids[r.db_windows[:, 0]] == ids[r.db_windows[:, 1]]).all()
    assert r.db_windows[:, 0].tolist() == [0, 1, 2, 3, 4, 6, 8]  # one map, frame spans kept
    # without sequences the same frames give a window that joins two sequences (the
    # stream itself only restarts where time goes back, between the other two)
    joined = evaluate(model, db, q, WindowConfig.fixed(2), GroundTruth(radius=6.0),
                      db_positions=pair.db.positions, query_positions=pair.query.positions)
    assert joined.n_db_windows == 8
    assert torch.is_tensor(db[0])


def test_training_config_with_the_msls_reader_trains_and_validates(tmp_path):
    from seqvpr_core.train import Trainer, config_from_dict

    for city in ("melbourne", "sf"):
        make_city(tmp_path / "msls", city, gap=100.0)  # B is a negative for every query
    cfg = config_from_dict({
        "model": {"encoder": {"name": "pixels", "image_size": [16, 32]},
                  "aggregator": {"name": "fc", "length": 2, "out_dim": 16}},
        "data": {"reader": "msls", "root": str(tmp_path / "msls"),
                 "options": {"cities": {"train": ["melbourne"], "val": ["sf"]}}},
        "output": str(tmp_path / "run"), "frozen_encoder": True, "window": {"length": 2},
        "ground_truth": {"pos_radius": 10.0, "eval_radius": 25.0},
        "mining": {"pool": 5, "negatives": 1, "refresh": 8},
        "optim": {"epochs": 1, "batch_size": 2, "lr": 1e-3}, "threads": 1})
    trainer = Trainer(cfg)
    ids = trainer.train_pairs[0].db.sequence_ids
    assert (ids[trainer.data[0].db_windows] == ids[trainer.data[0].db_windows[:, :1]]).all()
    summary = trainer.fit()
    assert summary["epochs"] == 1 and 0.0 <= summary["best_val_recall@5"] <= 1.0


def test_lazy_splits_answer_membership_without_reading(msls):
    raw = msls / "train_val" / "sf" / "database" / "raw.csv"
    raw.write_text(raw.read_text().replace(",pano", ",panorama"))
    splits = read_dataset("msls", msls, cities={"val": ["sf"], "test": ["cph"]})
    assert "val" in splits and "train" not in splits and sorted(splits) == ["test", "val"]
    with pytest.raises(ValueError, match="pano"):
        splits["val"]


def test_seqvpr_eval_pools_a_baseline_over_the_pairs_of_a_split(msls, tmp_path, capsys):
    """Two cities: every method's recall is pooled over both, baselines ranked outside
    the stream (SeqSLAM) weighted by the sequence's query windows they rank."""
    from seqvpr_core.cli.main import main

    cfg = _two_city_config(msls, tmp_path)
    out = tmp_path / "report.json"
    args = ["eval", "--data", str(cfg), "--split", "test", "--model", "pixels+seqgem",
            "--window", "2", "--radius", "25", "--json", str(out), "--examples", "0"]
    assert main([*args, "--seqslam", "--no-single-frame"]) == 0
    report = json.loads(out.read_text())
    pairs = report["pairs"]
    assert len(pairs) == 2 and all("seqslam_recall" in p for p in pairs)
    for rule, by_k in report["seqslam_recall"].items():
        for k, v in by_k.items():
            expected = sum(p["seqslam_recall"][rule][k] * p["queries"] for p in pairs) \
                / sum(p["queries"] for p in pairs)
            assert v == pytest.approx(expected)
    assert "SeqSLAM" in capsys.readouterr().out
    # one --plot for two pairs would be silently ignored: refused, before the work
    assert main([*args, "--plot", str(tmp_path / "mine.png")]) == 2
    assert "--plot" in capsys.readouterr().err and not (tmp_path / "mine.png").exists()
