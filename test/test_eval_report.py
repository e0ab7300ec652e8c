"""Evaluation additions: PR/AUC, SeqSLAM matching, and `seqvpr eval` outputs."""

from __future__ import annotations

import json

import numpy as np
import torch
from conftest import copy_frames

from seqvpr_core.cli.main import main
from seqvpr_core.eval.metrics import precision_recall
from seqvpr_core.eval.seqslam import seqslam_rank


def test_precision_recall_of_a_perfect_threshold_has_unit_auc():
    scores = np.array([0.9, 0.8, 0.3, 0.2])
    ids = np.array([1, 2, 3, 4])
    positives = [np.array([1]), np.array([2]), np.array([9]), np.array([9])]
    pr = precision_recall(scores, ids, positives)
    assert pr["recall_at_100_precision"] == 0.5
    assert pr["precision"][:3] == [1.0, 1.0, 1.0]
    assert abs(pr["auc"] - 0.5) < 1e-9  # precision 1 up to recall 0.5, then no new hits
    pr_bad = precision_recall(scores[::-1].copy(), ids, positives)
    assert pr_bad["auc"] < pr["auc"]


def test_seqslam_finds_a_noisy_revisit_of_a_random_route():
    g = torch.Generator().manual_seed(0)
    db = torch.nn.functional.normalize(torch.randn(60, 32, generator=g), dim=1)
    q = torch.nn.functional.normalize(db[10:50] + 0.5 * torch.randn(40, 32, generator=g), dim=1)
    length = 5
    db_w = np.stack([np.arange(56), np.arange(56) + length - 1], 1)
    q_w = np.stack([np.arange(36), np.arange(36) + length - 1], 1)
    ids, scores = seqslam_rank(q, db, q_w, db_w, k=3)
    single = ((q @ db.T).argmax(1).numpy() == np.arange(40) + 10).mean()
    assert single < 0.5  # frames alone are ambiguous at this noise
    assert (ids[:, 0] == np.arange(36) + 10).mean() > 0.85
    assert (np.diff(scores, axis=1) <= 0).all()


def test_seqvpr_eval_writes_json_recall_pr_and_example_figures(tmp_path, nordland):
    db = copy_frames(nordland / "summer", tmp_path / "summer", 40)
    q = copy_frames(nordland / "winter", tmp_path / "winter", 40)
    out = tmp_path / "report.json"
    rc = main(["eval", "--db", str(db), "--query", str(q), "--model", "pixels+seqgem",
               "--window", "5", "--tolerance", "1", "--json", str(out), "--seqslam",
               "--reverse", "--sweep", "3,5", "--examples", "3"])
    assert rc == 0
    report = json.loads(out.read_text())
    for rule in ("current", "seq2seq"):
        assert set(report["recall"][rule]) == {"1", "5", "10", "20"}
        for key in ("single_frame_recall", "seqslam_recall", "reversed_recall"):
            assert set(report[key][rule]) == {"1", "5", "10", "20"}
        assert set(report["window_sweep"]["3"][rule]) == {"1", "5", "10", "20"}
        for run in ("sequence", "single_frame", "seqslam"):
            assert 0.0 <= report["pr"][rule][run]["auc"] <= 1.0
    # seqgem is order-invariant: reversed windows retrieve exactly what forward ones do
    assert report["reversed_recall"] == report["forward_blocks_recall"]
    assert report["baselines"]["seqslam"]["parameters"]["velocities"]["source"]
    for key in ("extract_per_window", "extract_per_new_frame", "search_per_query"):
        assert report["timing_ms"][key] > 0
    assert report["memory_mb"]["peak_rss_mb"] > 0
    for suffix in (".png", "_pr.png", "_examples.png"):
        assert (tmp_path / f"report{suffix}").stat().st_size > 1000
