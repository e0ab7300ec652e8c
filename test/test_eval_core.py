"""Seq2seq ground truth and Recall@K against brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest

from seqvpr_core.eval import GroundTruth, recall_at_k, window_positives


def brute_positives(qw, dbw, near):
    """A map window is positive when any frame of it is near any query frame."""
    return [np.array([j for j, (a, b) in enumerate(dbw)
                      if any(near(qi, di) for qi in range(q0, q1 + 1)
                             for di in range(a, b + 1))]) for q0, q1 in qw]


def spans(n, length, stride=1):
    return np.array([[i, i + length - 1] for i in range(0, n - length + 1, stride)])


@pytest.mark.parametrize("length,tol", [(1, 0), (1, 1), (5, 1), (10, 2)])
def test_frame_tolerance_ground_truth_matches_definition(length, tol):
    qw, dbw = spans(40, length, 3), spans(50, length)
    got = window_positives(qw, dbw, 50, GroundTruth(tolerance=tol))
    ref = brute_positives(qw, dbw, lambda q, d: abs(q - d) <= tol)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_array_equal(g, r)


def test_radius_ground_truth_matches_definition():
    rng = np.random.default_rng(0)
    qpos, dbpos = rng.uniform(0, 100, (30, 2)), rng.uniform(0, 100, (40, 2))
    qw, dbw = spans(30, 3, 2), spans(40, 3)
    got = window_positives(qw, dbw, 40, GroundTruth(radius=10.0), qpos, dbpos)
    ref = brute_positives(qw, dbw, lambda q, d: np.linalg.norm(qpos[q] - dbpos[d]) <= 10.0)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_array_equal(g, r)
    with pytest.raises(ValueError, match="needs positions"):
        window_positives(qw, dbw, 40, GroundTruth(radius=10.0))


def test_recall_at_k_counts_first_hit_and_queries_without_positives_fail():
    I = np.array([[3, 1, 2], [0, 5, 6], [7, 8, 9], [4, -1, -1]])
    positives = [np.array([1]), np.array([0]), np.array([], dtype=int), np.array([9])]
    assert recall_at_k(I, positives, ks=(1, 2, 3)) == {1: 0.25, 2: 0.5, 3: 0.5}


def test_ground_truth_needs_exactly_one_criterion():
    with pytest.raises(ValueError):
        GroundTruth()
    with pytest.raises(ValueError):
        GroundTruth(tolerance=1, radius=5.0)
