"""Figures a user looks at after ``seqvpr eval``: PR curves and example matches."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from ..atomic import save_figure  # noqa: E402
from ..data import Traversal, read_image  # noqa: E402

MAX_STRIP_FRAMES = 12  # longer windows show this many frames, evenly spaced
GAP = 2  # white pixels between frames of a strip
OK, WRONG = "tab:green", "tab:red"


def _save(fig, path: str | os.PathLike) -> None:
    fig.tight_layout()
    save_figure(fig, path)


def plot_pr_curves(path: str | os.PathLike, curves: dict[str, dict[str, dict]],
                   title: str) -> None:
    """One panel per ground-truth rule, one precision-recall line per method in it,
    its AUC in the legend. ``curves``: ``{rule: {method label: pr}}``."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), dpi=120,
                             squeeze=False)
    for ax, (rule, methods) in zip(axes[0], curves.items(), strict=True):
        for label, pr in methods.items():
            ax.plot(pr["recall"], pr["precision"], label=f"{label} (AUC {pr['auc']:.2f})")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{rule} rule", fontsize=9)
        ax.legend(loc="lower left", fontsize=7)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def window_strip(traversal: Traversal, first: int, last: int) -> np.ndarray:
    """The frames first..last of a traversal side by side (uint8 RGB), at most
    :data:`MAX_STRIP_FRAMES` of them, evenly spaced, each resized to the first's height."""
    idx = np.arange(first, last + 1)
    if len(idx) > MAX_STRIP_FRAMES:
        idx = idx[np.linspace(0, len(idx) - 1, MAX_STRIP_FRAMES).round().astype(int)]
    frames = [read_image(traversal.paths[i]) for i in idx]
    h = frames[0].shape[0]
    parts = []
    for f in frames:
        if f.shape[0] != h:
            import cv2

            f = cv2.resize(f, (max(1, round(f.shape[1] * h / f.shape[0])), h),
                           interpolation=cv2.INTER_AREA)
        parts += [f, np.full((h, GAP, 3), 255, np.uint8)]
    return np.concatenate(parts[:-1], axis=1)


def plot_examples(path: str | os.PathLike, query: Traversal, db: Traversal,
                  q_spans: np.ndarray, db_spans: np.ndarray, ranked: np.ndarray,
                  positives_by_rule: dict[str, Sequence[np.ndarray]], rule: str,
                  n: int = 6, top: int = 3, title: str = "") -> None:
    """Example query windows, every frame of each, above the frames of their ``top``
    map windows; a map window is framed green when correct under ``rule``, red when
    not, and its label gives the verdict of every rule. Examples are spread evenly
    over the query traversal."""
    picks = np.linspace(0, len(q_spans) - 1, num=min(n, len(q_spans))).round().astype(int)
    fig, axes = plt.subplots(len(picks), 1, figsize=(9, (1 + top) * 0.6 * len(picks) + 0.5),
                             dpi=110, squeeze=False)
    for ax, q in zip(axes[:, 0], picks, strict=True):
        rows = [(window_strip(query, *q_spans[q]), f"query frames {q_spans[q][0]}-"
                 f"{q_spans[q][1]}", None)]
        for j in range(min(top, ranked.shape[1])):
            if ranked[q, j] < 0:
                continue
            a, b = db_spans[ranked[q, j]]
            verdicts = {r: ranked[q, j] in pos[q] for r, pos in positives_by_rule.items()}
            text = "  ".join(f"{r} {'ok' if v else 'wrong'}" for r, v in verdicts.items())
            rows.append((window_strip(db, a, b), f"#{j + 1} map {a}-{b}: {text}",
                         verdicts[rule]))
        _draw_rows(ax, rows)
    if title:
        fig.suptitle(title, fontsize=8)
    _save(fig, path)


def _draw_rows(ax, rows: list[tuple[np.ndarray, str, bool | None]]) -> None:
    """Stack strips top to bottom on one axis, a caption above each, a coloured
    frame around each map window (None: the query, unframed)."""
    width = max(strip.shape[1] for strip, _, _ in rows)
    height = rows[0][0].shape[0]
    pad = max(4, height // 2)  # room for the caption
    canvas = np.full(((height + pad) * len(rows), width, 3), 255, np.uint8)
    for i, (strip, _, _) in enumerate(rows):
        y = i * (height + pad) + pad
        h = min(height, strip.shape[0])
        canvas[y:y + h, :strip.shape[1]] = strip[:h]
    ax.imshow(canvas, interpolation="nearest")
    for i, (strip, caption, ok) in enumerate(rows):
        y = i * (height + pad) + pad
        color = "black" if ok is None else (OK if ok else WRONG)
        ax.text(0, y - 1, caption, fontsize=6, color=color, va="bottom")
        if ok is not None:
            ax.add_patch(Rectangle((-0.5, y - 0.5), strip.shape[1], height, fill=False,
                                   edgecolor=color, linewidth=2))
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
