"""JSON report and recall@K plot of an evaluation."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402


def write_json(path: str | os.PathLike, report: dict[str, Any]) -> None:
    """Atomic write: a crash never leaves half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def plot_recall_curves(path: str | os.PathLike, curves: dict[str, dict[int, float]],
                       title: str) -> None:
    """One recall@K line per labelled result, K on a log axis."""
    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=120)
    for label, recall in curves.items():
        ks = sorted(recall)
        ax.plot(ks, [recall[k] for k in ks], marker="o", label=label)
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
