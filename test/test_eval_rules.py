"""The two ground-truth rules: their definitions, what they accept, and that
`seqvpr localize` output scored by hand agrees with `seqvpr eval` under each."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import copy_frames

from seqvpr_core.cli.main import main
from seqvpr_core.eval import RULES, GroundTruth, window_positives
from seqvpr_core.eval.ground_truth import accepted_offset


def spans(n, length, stride=1):
    return np.array([[i, i + length - 1] for i in range(0, n - length + 1, stride)])


@pytest.mark.parametrize("length,tol", [(1, 0), (5, 1), (10, 2)])
def test_current_rule_compares_the_last_frames_only(length, tol):
    qw, dbw = spans(40, length, 3), spans(50, length)
    got = window_positives(qw, dbw, 50, GroundTruth(tolerance=tol, rule="current"))
    for (_, q_last), pos in zip(qw, got, strict=True):
        expected = [j for j, (_, d_last) in enumerate(dbw) if abs(d_last - q_last) <= tol]
        np.testing.assert_array_equal(pos, expected)


def test_current_rule_with_a_radius_uses_the_last_frames_positions():
    rng = np.random.default_rng(1)
    qpos, dbpos = rng.uniform(0, 60, (30, 2)), rng.uniform(0, 60, (40, 2))
    qw, dbw = spans(30, 4, 2), spans(40, 4)
    got = window_positives(qw, dbw, 40, GroundTruth(radius=12.0, rule="current"), qpos, dbpos)
    for (_, q_last), pos in zip(qw, got, strict=True):
        expected = [j for j, (_, d_last) in enumerate(dbw)
                    if np.linalg.norm(qpos[q_last] - dbpos[d_last]) <= 12.0]
        np.testing.assert_array_equal(pos, expected)


def test_each_rule_reports_the_offset_it_accepts():
    """At L=10 and tolerance 1 the seeds' rule accepts a match ending 10 frames away."""
    qw = dbw = spans(60, 10)
    accepted = {}
    for rule in RULES:
        gt = GroundTruth(tolerance=1, rule=rule)
        accepted[rule] = accepted_offset(qw, dbw, window_positives(qw, dbw, 60, gt), gt)
    assert accepted == {"current": {"max_last_frame_offset_frames": 1},
                        "seq2seq": {"max_last_frame_offset_frames": 10}}
    with pytest.raises(ValueError, match="unknown ground-truth rule"):
        GroundTruth(tolerance=1, rule="nearby")


def test_the_help_names_are_the_rules_and_baselines():
    from seqvpr_core import catalog
    from seqvpr_core.eval.baselines import BASELINES

    assert tuple(RULES) == catalog.GT_RULES
    assert tuple(BASELINES) == tuple(catalog.EVAL_BASELINES)


def _recall_from_localize_csv(path, window: int, tol: int, k: int) -> dict[str, float]:
    """Score `seqvpr localize` rows by hand: frame-aligned traversals, fixed windows."""
    hits = {"current": 0, "seq2seq": 0}
    rows = list(csv.DictReader(path.open()))
    for row in rows:
        q = int(row["query_index"])
        ends = [int(row[f"match{j}_index"]) for j in range(1, k + 1)]
        hits["current"] += any(abs(e - q) <= tol for e in ends)
        # windows [e - L + 1, e] and [q - L + 1, q] hold frames within tol of each other
        hits["seq2seq"] += any(abs(e - q) <= window - 1 + tol for e in ends)
    return {rule: n / len(rows) for rule, n in hits.items()}


def test_localize_csv_scored_by_hand_agrees_with_eval_under_both_rules(tmp_path, nordland):
    summer = copy_frames(nordland / "summer", tmp_path / "summer", 80)
    winter = copy_frames(nordland / "winter", tmp_path / "winter", 80)
    window, tol = 5, 1
    assert main(["build-map", "--images", str(summer), "--model", "pixels+avg",
                 "--window", str(window), "--out", str(tmp_path / "map")]) == 0
    assert main(["localize", "--map", str(tmp_path / "map"), "--images", str(winter),
                 "--out", str(tmp_path / "m.csv"), "--top-k", "5"]) == 0
    assert main(["eval", "--db", str(summer), "--query", str(winter), "--model", "pixels+avg",
                 "--window", str(window), "--tolerance", str(tol), "--examples", "0",
                 "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    for k in (1, 5):
        by_hand = _recall_from_localize_csv(tmp_path / "m.csv", window, tol, k)
        for rule in RULES:
            assert report["recall"][rule][str(k)] == pytest.approx(by_hand[rule]), (rule, k)
    # the rules differ here (order-free pooling finds the place, not where the window
    # ends), so the agreement above tells them apart
    assert report["recall"]["current"]["1"] < report["recall"]["seq2seq"]["1"]
    offsets = {rule: facts["max_last_frame_offset_frames"]
               for rule, facts in report["ground_truth"]["rules"].items()}
    assert offsets == {"current": tol, "seq2seq": window - 1 + tol}
