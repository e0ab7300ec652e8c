"""Evaluation: ground truth under two rules (seq2seq, current), Recall@K, reports, plots."""

from .evaluate import EvalResult, encode_traversal, evaluate
from .ground_truth import RULES, GroundTruth, window_positives
from .recall import RECALL_VALUES, recall_at_k

__all__ = ["RECALL_VALUES", "RULES", "EvalResult", "GroundTruth", "encode_traversal",
           "evaluate", "recall_at_k", "window_positives"]
