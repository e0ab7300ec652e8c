"""The recall@K plot of an evaluation (the JSON report is :mod:`.full_report`)."""

from __future__ import annotations

import os

import matplotlib

from ..atomic import save_figure

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402


def plot_recall_curves(path: str | os.PathLike, curves: dict[str, dict[int, float]],
                       title: str, styles: dict[str, dict] | None = None) -> None:
    """One recall@K line per labelled result, K on a log axis; ``styles`` gives
    matplotlib line options per label (e.g. one colour per method, one dash per rule)."""
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for label, recall in curves.items():
        ks = sorted(recall)
        style = {"marker": "o", **(styles or {}).get(label, {})}
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
