"""The report of ``seqvpr eval``: the model, its single-frame reference, the chosen
baselines and test-time variations, every recall under both ground-truth rules.

JSON layout (every recall is ``{rule: {K: Recall@K}}``, rules as in :data:`RULES`):
``ground_truth`` (criterion, and per rule its description and the largest
last-frame offset it accepted), ``recall`` (the model), ``single_frame_recall``,
``<baseline>_recall`` with ``baselines.<name>`` (label, parameters and their
sources), ``window_sweep``, ``forward_blocks_recall`` / ``reversed_recall``,
``pr`` (``{rule: {run: curve}}``), ``timing_ms``, ``memory_mb``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from ..data import Traversal
from ..data.windows import sequence_bounds
from ..models import SequenceModel
from ..stream import FrameInfo, WindowConfig
from .baselines import BASELINES
from .evaluate import EvalResult, encode_traversal, evaluate
from .ground_truth import RULES, GroundTruth, accepted_offset
from .recall import RECALL_VALUES, recall_at_k


def evaluate_report(model: SequenceModel, db: Traversal, query: Traversal,
                    window: WindowConfig, gt: GroundTruth, single_frame: bool = True,
                    ks: Sequence[int] = RECALL_VALUES, batch_size: int = 32,
                    progress: bool = True, window_sweep: Sequence[int] = (),
                    reverse: bool = False, baselines: Sequence[str] = ()
                    ) -> tuple[dict, dict[str, EvalResult]]:
    """The report of ``seqvpr eval`` (JSON-ready) and the :class:`EvalResult` of
    every run by name (for figures): sequence recall, and single-frame recall of the
    same encoder on the same cached features as the reference.

    Args:
        window_sweep: also evaluate these test-time window lengths (variable-length
            aggregators only; fixed-length models are trained for one length).
        reverse: also stream every query window in reversed frame order.
        baselines: names in :data:`BASELINES` to run on the same frame features:
            matchers (SeqSLAM) rank the model's windows, learning-free aggregators
            (delta) stream the same windows like the model.
    """
    from .metrics import aggregate_ms, peak_memory_mb, precision_recall, search_ms

    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; known: {sorted(BASELINES)}")
    # aggregator baselines stream like the model; refused (a bad pairing) before encoding
    streamed = {name: model.with_aggregator(BASELINES[name].aggregator)
                for name in baselines if BASELINES[name].aggregator}
    db_enc, q_enc = (encode_traversal(model, t, batch_size, progress) for t in (db, query))
    q_in = (*q_enc[:2], query.sequence_ids)  # (features, infos, sequence ids)
    runs = {"sequence": (model, window, q_in, None)}
    if single_frame:
        runs["single_frame"] = (model.with_aggregator("none"), WindowConfig.fixed(1), q_in, None)
    runs.update({name: (other, window, q_in, None) for name, other in streamed.items()})
    if reverse:
        blocks = WindowConfig.fixed(window.max_len, window.max_len)  # one window per block
        runs["forward_blocks"] = (model, window, q_in, blocks)
        runs["reversed"] = (model, window, _reversed_windows(q_in, window), blocks)
    for length in window_sweep:
        if model.variable_length and length != window.max_len:
            runs[f"window_{length}"] = (model, WindowConfig.fixed(length, window.stride),
                                        q_in, None)
    encode_ms = (db_enc[2] * len(db) + q_enc[2] * len(query)) / (len(db) + len(query))
    report: dict = {
        "model": model.name,
        "model_config": model.config,
        "descriptor_dim": model.descriptor_dim,
        "window": {"min_len": window.min_len, "max_len": window.max_len,
                   "stride": window.stride},
        "ground_truth": gt.criterion(),
        "db": _describe(db),
        "query": _describe(query),
        "timing_ms": {"encode_per_frame": encode_ms},
        "pr": {rule: {} for rule in RULES},
    }
    results: dict[str, EvalResult] = {}
    for key, (m, w, (q_feats, q_infos, q_seqs), q_w) in runs.items():
        r = evaluate(m, db_enc[:2], (q_feats, q_infos), w, gt, ks, db.positions,
                     query.positions, q_w, db_headings=db.headings,
                     query_headings=query.headings, db_sequences=db.sequence_ids,
                     query_sequences=q_seqs)
        results[key] = r
        prefix = "" if key == "sequence" else f"{key}_"
        report[f"{prefix}recall"] = by_rule(r.recalls)
        report[f"{prefix}queries"] = r.n_queries
        if key in ("sequence", "single_frame", *streamed):
            report["timing_ms"].update({f"{prefix}{k}": v for k, v in r.timing_ms.items()})
            for rule, positives in r.positives_by_rule.items():
                report["pr"][rule][key] = precision_recall(r.top_scores[:, 0],
                                                           r.ranked_ids[:, 0], positives)
    seq = results["sequence"]
    report["ground_truth"]["rules"] = {
        rule: {"description": RULES[rule].description,
               **accepted_offset(seq.query_windows, seq.db_windows, positives, gt,
                                 query.positions, db.positions)}
        for rule, positives in seq.positives_by_rule.items()}
    if window_sweep:
        report["window_sweep"] = {str(w.max_len): report[f"{k}_recall"]
                                  for k, (_, w, _, _) in runs.items() if k.startswith("window_")}
        report["window_sweep"][str(window.max_len)] = report["recall"]
    agg = aggregate_ms(model, db_enc[0], window.max_len)
    report["timing_ms"].update({
        "aggregate_per_window": agg,
        "extract_per_window": window.max_len * encode_ms + agg,  # a window from scratch
        "extract_per_new_frame": encode_ms + agg,  # streaming: one new frame, re-aggregate
        "search_per_query": search_ms(seq.place_map, seq.query_descriptors, max(ks)),
    })
    if baselines:
        report["baselines"] = {name: {"label": BASELINES[name].label,
                                      "parameters": BASELINES[name].parameters}
                               for name in baselines}
    for name in baselines:
        if name in streamed:
            continue
        ranked, scores = BASELINES[name].rank(q_enc[0], db_enc[0], seq.query_windows,
                                              seq.db_windows, max(ks))
        report[f"{name}_recall"] = by_rule({rule: recall_at_k(ranked, positives, ks)
                                            for rule, positives in
                                            seq.positives_by_rule.items()})
        for rule, positives in seq.positives_by_rule.items():
            report["pr"][rule][name] = precision_recall(scores[:, 0], ranked[:, 0], positives)
    report["memory_mb"] = peak_memory_mb(model.device)
    return report, results


def by_rule(recalls: dict[str, dict[int, float]]) -> dict[str, dict[str, float]]:
    """``{rule: {K: recall}}`` with string keys, as JSON holds it."""
    return {rule: {str(k): v for k, v in r.items()} for rule, r in recalls.items()}


def _describe(t: Traversal) -> dict:
    out: dict = {"name": t.name, "frames": len(t)}
    if t.sequence_ids is not None:
        out["sequences"] = len(sequence_bounds(len(t), t.sequence_ids))
    return out


def _reversed_windows(encoded: tuple[torch.Tensor, list[FrameInfo], np.ndarray | None],
                      window: WindowConfig
                      ) -> tuple[torch.Tensor, list[FrameInfo], np.ndarray | None]:
    """Query frames re-ordered so every full window is streamed newest-first.

    Blocks of ``max_len`` frames (cut in every sequence separately) are each
    reversed, and windows with stride = ``max_len`` are taken on them, so each
    evaluated window holds the same frames as a forward window, in the opposite
    order. Stamps keep running forward, as for a robot driving the route backwards
    (the stream restarts its windows when time goes back).
    """
    feats, infos, sequences = encoded
    blocks = []
    for start, stop in sequence_bounds(len(infos), sequences):
        n = (stop - start) - (stop - start) % window.max_len
        blocks.append(start + np.arange(n).reshape(-1, window.max_len)[:, ::-1].reshape(-1))
    order = np.concatenate(blocks or [np.zeros(0, dtype=np.int64)]).astype(np.int64)
    forward = np.sort(order)
    return (feats[torch.from_numpy(order.copy())],
            [replace(infos[i], stamp_ns=infos[j].stamp_ns) for i, j in zip(order, forward,
                                                                        strict=True)],
            None if sequences is None else np.asarray(sequences)[order])
