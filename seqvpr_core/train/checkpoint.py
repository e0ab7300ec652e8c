"""Training state on disk: one atomic file per epoch, read back without pickled code.

``last.ckpt`` holds everything ``--resume`` needs to continue exactly: weights,
optimiser, scheduler, AMP scaler, torch RNG, epoch, early-stopping state and
history. Mining needs no saved generator: every random draw is seeded from
(seed, epoch, step, rank), so the resumed epoch draws what the lost one would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path, save_figure, write_json
from ..inputs import InputError, fields, read_torch
from ..outputs import HISTORY, OutputKind

TRAIN_FORMAT = "seqvpr-train-state"
TRAIN_VERSION = 1
LAST, BEST, INIT = "last.ckpt", "best.pt", "init.pt"  # init: the untrained start, a baseline
HISTORY_FILE, CURVE = "history.json", "training_curve.png"


STATE_FIELDS: dict[str, Any] = {
    "format": str, "version": int, "config": dict, "net": dict, "optimizer": dict,
    "scheduler": (dict, type(None)), "scaler": dict, "epoch": int, "step": int,
    "best": float, "bad_epochs": int, "history": list, "torch_rng": torch.Tensor}
OPTIONAL_STATE_FIELDS: dict[str, Any] = {"best_epoch": int}  # absent in older states


def atomic_torch_save(payload: dict[str, Any], path: Path, kind: OutputKind) -> None:
    with atomic_path(path, kind) as tmp:
        torch.save(payload, tmp)


def load_state(path: Path) -> dict[str, Any]:
    """``last.ckpt`` checked field by field: a truncated, foreign or hand-made file is
    an error naming it, never a KeyError half-way through resuming."""
    if not path.exists():
        raise FileNotFoundError(f"--resume: no training state {path}; start without --resume")
    state = read_torch(path, "training state")
    if not isinstance(state, dict) or state.get("format") != TRAIN_FORMAT:
        raise InputError(f"{path} is not a seqvpr training state (no '{TRAIN_FORMAT}' "
                         "format tag)")
    if state.get("version") != TRAIN_VERSION:
        raise InputError(f"{path} has training-state version {state.get('version')}, this "
                         f"seqvpr reads {TRAIN_VERSION}")
    fields(state, str(path), STATE_FIELDS, OPTIONAL_STATE_FIELDS)
    return state


def write_history(out: Path, history: list[dict[str, Any]], title: str,
                  best_epoch: int | None = None) -> None:
    """history.json and the training-curve plot (loss and validation recall per epoch)."""
    write_json(out / HISTORY_FILE, history, HISTORY)
    plot_curve(out / CURVE, history, title, best_epoch)


def plot_curve(path: Path, history: list[dict[str, Any]], title: str,
               best_epoch: int | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for k in ("1", "5"):
        ax.plot(epochs, [h["val_recall"][k] for h in history], marker="o",
                label=f"validation R@{k}")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="tab:green", linestyle=":",
                   label=f"best.pt (epoch {best_epoch})")
    ax.set_xlabel("epoch (0 = untrained)")
    ax.set_ylabel("Recall@K")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    trained = [h for h in history if h.get("loss") is not None]
    if trained:
        ax2 = ax.twinx()
        ax2.plot([h["epoch"] for h in trained], [h["loss"] for h in trained], color="gray",
                 linestyle="--", label="train loss")
        ax2.set_ylabel("triplet loss")
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
