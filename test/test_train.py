"""Training: exact resume after a crash, and the JIST branch end to end (real frames)."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import SHARED_NORDLAND

from seqvpr_core.data.pairs import read_dataset
from seqvpr_core.train import Trainer, config_from_dict
from seqvpr_core.train.jist import build_groups

NORDLAND = SHARED_NORDLAND if SHARED_NORDLAND.is_dir() else None


def _nordland_tree(tmp: Path, n: int) -> Path:
    """The first ``n`` frame-aligned summer/winter frames in the Nordland layout."""
    src = NORDLAND or Path(__file__).resolve().parents[1] / "seqvpr_core/demo_data/nordland"
    for season in ("summer", "winter"):
        (tmp / season).mkdir(parents=True)
        for p in sorted((src / season).glob("*.png"))[:n]:
            shutil.copy(p, tmp / season / p.name)
    return tmp


def _cpu_config(tmp: Path, root: Path, **over) -> dict:
    cfg = {
        "model": {"encoder": {"name": "pixels", "image_size": [16, 32]},
                  "aggregator": {"name": "fc", "length": 3, "out_dim": 32}},
        "data": {"reader": "nordland", "root": str(root),
                 "options": {"splits": {"train": [0, 60], "val": [60, 90]}}},
        "output": str(tmp / "run"), "frozen_encoder": True,
        "window": {"length": 3}, "ground_truth": {"pos_tolerance": 1, "eval_tolerance": 1},
        "mining": {"pool": 20, "refresh": 16},
        "optim": {"epochs": 3, "batch_size": 4, "lr": 1e-3, "patience": 10},
        "threads": 1, "seed": 3,
    }
    cfg.update(over)
    return cfg


class Crash(RuntimeError):
    pass


def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path):
    """A run stopped after epoch 1 and resumed equals an uninterrupted run (same seed)."""
    root = _nordland_tree(tmp_path / "nordland", 90)
    whole = Trainer(config_from_dict(_cpu_config(tmp_path / "a", root)))
    whole.fit()

    def crash(epoch: int) -> None:
        if epoch == 1:
            raise Crash

    cfg_b = config_from_dict(_cpu_config(tmp_path / "b", root))
    with pytest.raises(Crash):
        Trainer(cfg_b, after_epoch=crash).fit()
    resumed = Trainer(cfg_b, resume=True)
    assert resumed.epoch == 1
    resumed.fit()
    a, b = whole.net.state_dict(), resumed.net.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["val_recall"] for h in whole.history] == [h["val_recall"] for h in resumed.history]
    assert (tmp_path / "b" / "run" / "best.pt").is_file()
    assert (tmp_path / "b" / "run" / "training_curve.png").is_file()


def _route_with_headings(tmp: Path, n: int) -> Path:
    """Two traversals of an L-shaped route (east, then north) with poses.csv headings."""
    src = NORDLAND or Path(__file__).resolve().parents[1] / "seqvpr_core/demo_data/nordland"
    for season, offset in (("summer", 0.0), ("winter", 1.0)):
        out = tmp / season
        out.mkdir(parents=True)
        rows = []
        for i, p in enumerate(sorted((src / season).glob("*.png"))[:n]):
            shutil.copy(p, out / p.name)
            half = n // 2
            x, y, h = (4.0 * i + offset, 0.0, 90.0) if i < half else \
                (4.0 * half, 4.0 * (i - half) + offset, 0.0)
            rows.append([p.name, float(i), x, y, h])
        with (out / "poses.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["name", "stamp", "x", "y", "heading"])
            w.writerows(rows)
    return tmp


def test_jist_branch_builds_cosface_classes_and_both_losses_decrease(tmp_path):
    root = _route_with_headings(tmp_path / "route", 36)
    cfg = config_from_dict(_cpu_config(
        tmp_path, root,
        model={"encoder": {"name": "resnet18", "pretrained": False, "fc_dim": 32,
                           "image_size": [32, 32]},
               "aggregator": {"name": "seqgem"}},
        data={"reader": "folder_csv", "root": str(root),
              "options": {"pairs": {"train": [["summer", "winter"]],
                                    "val": [["summer", "winter"]]}}},
        frozen_encoder=False,
        ground_truth={"pos_radius": 5.0, "eval_radius": 12.0},
        mining={"pool": 16, "refresh": 1000, "negatives": 5},
        optim={"epochs": 3, "batch_size": 4, "lr": 1e-3, "encoder_lr": 1e-3, "patience": 10},
        jist={"enabled": True, "images_per_step": 16, "groups_n": 2, "groups_l": 2},
    ))
    groups = build_groups(read_dataset("folder_csv", root, **cfg.data.options)["train"],
                          cfg.jist)
    # 10 m cells x 30 degree bins: east leg heading 90 (bin 3), north leg heading 0 (bin 0)
    assert len(groups) >= 2 and sum(g.classes for g in groups) >= 4
    trainer = Trainer(cfg)
    trainer.fit()
    losses = torch.tensor(trainer.jist_losses)
    k = max(1, len(losses) // 3)
    first, last = losses[:k].mean(0), losses[-k:].mean(0)
    assert last[0] < first[0], f"triplet loss did not decrease: {first[0]:.4f} -> {last[0]:.4f}"
    assert last[1] < first[1], f"CosFace loss did not decrease: {first[1]:.4f} -> {last[1]:.4f}"
    assert all(math.isfinite(v) for v in losses.flatten().tolist())


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_and_validate_like_one(tmp_path):
    """torchrun with 2 gloo processes: mining, training and validation all run and the
    validation recall matches the single-process run within noise."""
    import json
    import subprocess
    import sys

    import yaml

    root = _nordland_tree(tmp_path / "nordland", 90)
    recalls = {}
    for procs in (1, 2):
        cfg = _cpu_config(tmp_path / f"p{procs}", root)
        cfg["optim"]["batch_size"] = 4 // procs  # the same effective batch
        path = tmp_path / f"p{procs}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={procs}", "-m", "seqvpr_core.cli.main", "train",
               "--config", str(path)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        history = json.loads((tmp_path / f"p{procs}" / "run" / "history.json").read_text())
        recalls[procs] = history[-1]["val_recall"]["5"]
        assert len(history) == 4  # untrained + 3 epochs
    assert abs(recalls[1] - recalls[2]) <= 0.15, recalls
