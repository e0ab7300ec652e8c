"""Evaluation: seq2seq ground truth, Recall@K, reports and plots."""

from .evaluate import EvalResult, encode_traversal, evaluate
from .ground_truth import GroundTruth, window_positives
from .recall import RECALL_VALUES, recall_at_k

__all__ = ["RECALL_VALUES", "EvalResult", "GroundTruth", "encode_traversal", "evaluate",
           "recall_at_k", "window_positives"]
