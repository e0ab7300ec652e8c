"""Figures a user looks at after ``seqvpr eval``: PR curves and example matches."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..atomic import save_figure  # noqa: E402
from ..data import Traversal, read_image  # noqa: E402


def _save(fig, path: str | os.PathLike) -> None:
    fig.tight_layout()
    save_figure(fig, path)


def plot_pr_curves(path: str | os.PathLike, curves: dict[str, dict], title: str) -> None:
    """One precision-recall line per method, its AUC in the legend."""
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for label, pr in curves.items():
        ax.plot(pr["recall"], pr["precision"], label=f"{label} (AUC {pr['auc']:.2f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    _save(fig, path)


def plot_examples(path: str | os.PathLike, query: Traversal, db: Traversal,
                  q_spans: np.ndarray, db_spans: np.ndarray, ranked: np.ndarray,
                  positives: Sequence[np.ndarray], n: int = 6, top: int = 3,
                  title: str = "") -> None:
    """Rows of example query windows (first, middle, last frame) with their ``top``
    matches (the middle frame of each map window); green = correct, red = wrong.
    Examples are spread evenly over the query traversal."""
    picks = np.linspace(0, len(q_spans) - 1, num=min(n, len(q_spans))).round().astype(int)
    cols = 3 + top
    fig, axes = plt.subplots(len(picks), cols, figsize=(1.9 * cols, 1.25 * len(picks) + 0.4),
                             dpi=110, squeeze=False)
    for row, q in zip(axes, picks, strict=True):
        first, last = q_spans[q]
        for ax, f, label in zip(row[:3], (first, (first + last) // 2, last),
                                ("query first", "query mid", "query last"), strict=True):
            ax.imshow(read_image(query.paths[f]))
            ax.set_title(f"{label} {f}", fontsize=6)
        for j, ax in enumerate(row[3:]):
            mid = -1
            if j < ranked.shape[1] and ranked[q, j] >= 0:
                a, b = db_spans[ranked[q, j]]
                mid = (a + b) // 2
                ax.imshow(read_image(db.paths[mid]))
                ok = ranked[q, j] in positives[q]
                for side in ax.spines.values():
                    side.set_edgecolor("tab:green" if ok else "tab:red")
                    side.set_linewidth(3)
                ax.set_title(f"#{j + 1} map {mid} {'ok' if ok else 'wrong'}", fontsize=6,
                             color="tab:green" if ok else "tab:red")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    _save(fig, path)
