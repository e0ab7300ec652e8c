"""What makes a training run honest and worth running: the untrained start competes
for best.pt, the summary names the best epoch, positives follow the current rule,
augmented copies are real, cached and reproducible, and held-out stretches can
swap the map/query roles."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from seqvpr_core.cli.main import main
from seqvpr_core.data import read_image
from seqvpr_core.data.pairs import read_dataset
from seqvpr_core.data.readers.nordland import read_season
from seqvpr_core.models import SequenceModel, load_model
from seqvpr_core.train import Trainer, config_from_dict
from seqvpr_core.train.augment import augment_frame, frame_rng
from seqvpr_core.train.config import AugmentConfig, GroundTruthSpec, WindowSpec
from seqvpr_core.train.features import cached_features
from seqvpr_core.train.samples import WindowInputs, build_pair_windows
from seqvpr_core.train.validate import validate

DEMO = Path(__file__).resolve().parents[1] / "seqvpr_core" / "demo_data" / "nordland"


def _tree(tmp: Path, n: int) -> Path:
    for season in ("summer", "winter"):
        (tmp / season).mkdir(parents=True)
        for p in sorted((DEMO / season).glob("*.png"))[:n]:
            shutil.copy(p, tmp / season / p.name)
    return tmp


def _config(tmp: Path, root: Path, **over) -> dict:
    cfg = {
        "model": {"encoder": {"name": "pixels"},
                  "aggregator": {"name": "fc", "length": 3, "out_dim": 32}},
        "data": {"reader": "nordland", "root": str(root),
                 "options": {"splits": {"train": [0, 50], "val": [60, 90]}}},
        "output": str(tmp / "run"), "frozen_encoder": True,
        "window": {"length": 3},
        "ground_truth": {"pos_tolerance": 1, "eval_tolerance": 1, "rule": "current"},
        "mining": {"pool": 20, "refresh": 16},
        "optim": {"epochs": 3, "batch_size": 4, "lr": 1e-3, "patience": 10, "monitor": 1},
        "threads": 1, "seed": 3,
    }
    cfg.update(over)
    return cfg


def _scripted_validation(monkeypatch, r1: list[float]) -> None:
    """Validation Recall@1 of epochs 0, 1, 2, ... in order (training itself is real)."""
    values = iter(r1)

    def validate(*_args, **_kw):
        v = next(values)
        return {"1": v, "5": min(1.0, v + 0.1), "10": 1.0, "20": 1.0}
    monkeypatch.setattr("seqvpr_core.train.loop.validate", validate)


def _train_cli(tmp_path: Path, cfg: dict, capsys) -> str:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path)]) == 0
    return capsys.readouterr().out


def test_summary_reports_the_best_epoch_not_the_last(tmp_path, monkeypatch, capsys):
    _scripted_validation(monkeypatch, [0.50, 0.60, 0.80, 0.70])
    out = _train_cli(tmp_path, _config(tmp_path, _tree(tmp_path / "data", 90)), capsys)
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 4 and "untrained" in lines[0]  # one line per validated epoch
    assert "best so far" in lines[2] and "best so far" not in lines[3]
    assert "best model: epoch 2, validation (current rule) R@1 0.800" in out
    assert "last epoch 3: R@1 0.700" in out


def test_untrained_start_is_kept_when_training_never_beats_it(tmp_path, monkeypatch, capsys):
    _scripted_validation(monkeypatch, [0.90, 0.60, 0.70, 0.80])
    out = _train_cli(tmp_path, _config(tmp_path, _tree(tmp_path / "data", 90)), capsys)
    assert "best model: epoch 0 (the untrained start" in out
    best, init = (load_model(tmp_path / "run" / f) for f in ("best.pt", "init.pt"))
    last = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)["net"]
    assert all(torch.equal(a, b) for a, b in zip(best.state_dict().values(),
                                                 init.state_dict().values(), strict=True))
    assert not torch.equal(last["model.aggregator.fc.weight"], best.aggregator.fc.weight)


def test_current_rule_positives_end_where_the_query_ends_and_overlaps_are_not_negatives(
        tmp_path):
    root = _tree(tmp_path, 40)
    pair = read_dataset("nordland", root)["test"][0]
    pw = build_pair_windows(pair, WindowSpec(length=5),
                            GroundTruthSpec(pos_tolerance=1, eval_tolerance=1, rule="current"))
    for q, (pos, near) in enumerate(zip(pw.positives, pw.near, strict=True)):
        q_last = pw.q_windows[q, -1]
        np.testing.assert_array_equal(pw.db_windows[pos, -1],
                                      [e for e in pw.db_windows[:, -1] if abs(e - q_last) <= 1])
        # every window sharing a frame (within 1) with the query is kept out of the negatives
        assert set(pos) < set(near) and len(near) == sum(
            abs(e - q_last) <= 5 for e in pw.db_windows[:, -1])


def test_augmented_copies_are_cached_reproducible_and_drawn_during_training(tmp_path):
    root = _tree(tmp_path / "data", 12)
    summer = read_season(root, "summer")
    model = SequenceModel({"encoder": {"name": "pixels"}, "aggregator": "none"}).eval()
    aug = AugmentConfig(copies=2, keep_clean=0.0)
    frame = read_image(summer.paths[0])
    out = augment_frame(frame, aug, frame_rng(0, 0, 0))
    assert out.shape == frame.shape and out.dtype == np.uint8 and not np.array_equal(out, frame)
    np.testing.assert_array_equal(out, augment_frame(frame, aug, frame_rng(0, 0, 0)))
    clean = cached_features(model, summer, tmp_path / "cache", progress=False)
    copies = [cached_features(model, summer, tmp_path / "cache", progress=False,
                              augment=(aug, c, 0)) for c in range(2)]
    again = cached_features(model, summer, tmp_path / "cache", progress=False,
                            augment=(aug, 1, 0))
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3  # reused, not rebuilt
    np.testing.assert_array_equal(again, copies[1])
    assert not np.allclose(copies[0], clean) and not np.allclose(copies[0], copies[1])
    pair = read_dataset("nordland", root)["test"][0]
    inputs = WindowInputs(model, {"db": clean, "query": clean}, pair, aug,
                          {"db": copies, "query": copies})
    windows = np.arange(12).reshape(4, 3)
    drawn = inputs("db", windows, torch.device("cpu"), np.random.default_rng(0)).numpy()
    plain = inputs("db", windows, torch.device("cpu")).numpy()  # mining, validation
    np.testing.assert_array_equal(plain, np.asarray(clean)[windows])
    for i, f in enumerate(windows.reshape(-1)):
        row = drawn.reshape(-1, drawn.shape[-1])[i]
        assert any(np.array_equal(row, c[f]) for c in copies)


def test_a_run_with_augmentation_trains_end_to_end(tmp_path):
    cfg = config_from_dict(_config(tmp_path, _tree(tmp_path / "data", 90),
                                   augment={"copies": 2},
                                   optim={"epochs": 1, "batch_size": 4, "lr": 1e-3,
                                          "monitor": 1}))
    summary = Trainer(cfg).fit()
    assert summary["epochs"] == 1 and summary["best_epoch"] in (0, 1)
    assert len(list(Path(cfg.cache_dir).glob("*-aug*.npy"))) == 4  # 2 copies x 2 sides


def test_a_held_out_stretch_can_swap_the_map_and_query_seasons(tmp_path):
    root = _tree(tmp_path, 40)
    splits = read_dataset("nordland", root, splits={"train": [0, 20], "unseen": [20, 40]},
                          seasons={"unseen": ["winter", "summer"]})
    assert splits["train"][0].db.name == "summer[0:20]"
    assert (splits["unseen"][0].db.name, splits["unseen"][0].query.name) == \
        ("winter[20:40]", "summer[20:40]")
    with pytest.raises(ValueError, match="not in splits"):
        read_dataset("nordland", root, splits={"train": [0, 20]},
                     seasons={"val": ["winter", "summer"]})


def test_identity_head_starts_as_the_model_without_it_and_pca_head_as_pca(tmp_path):
    root = _tree(tmp_path / "data", 90)
    enc = {"name": "pixels", "image_size": [8, 16]}
    common = dict(model={"encoder": enc, "head": {"dim": 128},
                         "aggregator": {"name": "cat", "length": 3}},
                  optim={"epochs": 1, "monitor": 1})
    ident = Trainer(config_from_dict(_config(tmp_path / "a", root, head_init="identity",
                                             **common)))
    plain = SequenceModel({"encoder": enc, "aggregator": {"name": "cat", "length": 3}}).eval()
    assert ident.fit()["history"][0]["val_recall"] == \
        validate(plain, ident.val_pairs, ident.cfg, lambda i: None)
    pca = Trainer(config_from_dict(_config(tmp_path / "c", root, head_init="pca",
                                           **{**common, "model": {**common["model"],
                                                                  "head": {"dim": 16}}})))
    w = pca.model.head.fc.weight.detach().double()
    torch.testing.assert_close(w @ w.T, torch.eye(16, dtype=torch.float64), atol=1e-5,
                               rtol=0)
    with pytest.raises(ValueError, match="identity needs head dim"):
        Trainer(config_from_dict(_config(tmp_path / "d", root, head_init="identity",
                                         **{**common, "model": {**common["model"],
                                                                "head": {"dim": 16}}})))
