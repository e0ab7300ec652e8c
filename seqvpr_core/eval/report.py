"""The recall@K plot of an evaluation (the JSON report is :mod:`.full_report`)."""

from __future__ import annotations

import os

import matplotlib

from ..atomic import save_figure

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

RULE_STYLES = {"current": "-", "seq2seq": "--"}  # line style of each rule in the plots


def plot_recall_curves(path: str | os.PathLike,
                       methods: dict[str, dict[str, dict[int | str, float]]],
                       title: str) -> None:
    """One recall@K line per method and ground-truth rule (``{label: {rule: {K: v}}}``,
    K as int or as the JSON report's string): a colour per method, a dash per rule,
    K on a log axis."""
    curves, styles = {}, {}
    for i, (label, by_rule) in enumerate(methods.items()):
        for rule, recall in by_rule.items():
            curves[f"{label} ({rule})"] = {int(k): v for k, v in recall.items()}
            styles[f"{label} ({rule})"] = {"color": f"C{i}", "linestyle": RULE_STYLES[rule]}
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for label, recall in curves.items():
        ks = sorted(recall)
        style = {"marker": "o", **styles[label]}
        ax.plot(ks, [recall[k] for k in ks], label=label, **style)
    ax.set_xscale("log")
    ks = sorted({k for r in curves.values() for k in r})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
