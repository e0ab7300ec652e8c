"""``seqvpr train`` against hostile configs, output folders and training states: every
refusal names the file and the key, and comes before any training work."""

from __future__ import annotations

import math
import os

import pytest
import torch
import yaml
from hostile import call, changed, no_hang, refused, snapshot

from seqvpr_core.train.checkpoint import TRAIN_FORMAT, TRAIN_VERSION

MODEL = {"encoder": {"name": "pixels", "image_size": [16, 32]},
         "aggregator": {"name": "fc", "length": 3, "out_dim": 16}}


def config(tmp_path, **over) -> dict:
    cfg = {"model": MODEL,
           "data": {"reader": "nordland", "root": str(tmp_path / "data"),
                    "options": {"splits": {"train": [0, 20], "val": [20, 30]}}},
           "output": str(tmp_path / "run"), "frozen_encoder": True,
           "window": {"length": 3}, "ground_truth": {"pos_tolerance": 1, "eval_tolerance": 1},
           "mining": {"pool": 10, "refresh": 8},
           "optim": {"epochs": 1, "batch_size": 2, "lr": 1e-3, "patience": 2}, "threads": 1}
    for key, value in over.items():
        section, _, name = key.partition("__")
        if name:
            cfg[section] = {**cfg.get(section, {}), name: value}
        else:
            cfg[section] = value
    return cfg


def write(tmp_path, cfg, name="train.yaml"):
    path = tmp_path / name
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("over,message", [
    ({"optim__patience": -1}, "optim.patience must be an integer >= 1, got -1"),
    ({"optim__epochs": 0}, "optim.epochs must be an integer >= 1, got 0"),
    ({"optim__lr": math.nan}, "optim.lr must be a finite number > 0, got nan"),
    ({"optim__lr": "fast"}, "optim.lr must be a number, got a string ('fast')"),
    ({"optim__amp": "yes"}, "optim.amp must be true or false, got a string ('yes')"),
    ({"optim__lrr": 1.0}, "unknown keys ['lrr'] in optim"),
    ({"optim__scheduler": "linear"}, "optim.scheduler must be one of ('none', 'step', 'cosine')"),
    ({"optim": [1, 2]}, "optim must be a mapping of keys to values, got a list"),
    ({"mining__negatives": 20}, "mining needs negatives <= pool, got 20 > 10"),
    ({"mining__margin": -0.1}, "mining.margin must be a finite number >= 0"),
    ({"window__length": 0}, "window.length must be an integer in 1..1000, got 0"),
    ({"window__spacing_m": math.inf}, "window.spacing_m must be a finite number >= 0, got inf"),
    ({"ground_truth__pos_radius": 5.0},
     "ground_truth needs exactly one of pos_tolerance or pos_radius"),
    ({"ground_truth__eval_tolerance": -2}, "ground_truth.eval_tolerance must be an integer >= 0"),
    ({"data__reader": "kitti"}, "data.reader must be one of"),
    ({"device": "tpu"}, "device must be one of ('auto', 'cpu', 'cuda')"),
    ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ({"threads": 10**6}, "threads must be an integer in 0..1024"),
    ({"jist__heading_deg": 0.0}, "jist.heading_deg must be a finite number > 0 and <= 360"),
    ({"shuffle": True}, "unknown keys ['shuffle'] in the config"),
    ({"data__options": {"spilts": {}}}, "data.options: dataset reader 'nordland': got an "
                                        "unexpected keyword argument 'spilts'"),
])
def test_bad_config_values_name_the_file_and_the_key(tmp_path, capsys, over, message):
    path = write(tmp_path, config(tmp_path, **over))
    refused(call(["train", "--config", path], capsys), f"{path}: {message}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text,message", [
    ("optim: {epochs: [\n", "is not valid YAML"),
    ("[1, 2]\n", "config must be a mapping of keys to values, got a list"),
    ("", "the config lacks keys ['model', 'data', 'output']"),
    ("data: {reader: nordland}\nmodel: {}\noutput: x\n", "data lacks keys ['root']"),
])
def test_malformed_config_files(tmp_path, capsys, text, message):
    path = write(tmp_path, text)
    refused(call(["train", "--config", path], capsys), str(path), message)


def test_config_paths_that_are_not_files(tmp_path, capsys):
    refused(call(["train", "--config", tmp_path / "none.yaml"], capsys),
            f"training config {tmp_path / 'none.yaml'} does not exist")
    (tmp_path / "dir.yaml").mkdir()
    refused(call(["train", "--config", tmp_path / "dir.yaml"], capsys), "is a directory")
    os.mkfifo(tmp_path / "fifo.yaml")
    with no_hang():
        refused(call(["train", "--config", tmp_path / "fifo.yaml"], capsys), "named pipe")


def test_epochs_option_is_checked(tmp_path, capsys):
    path = write(tmp_path, config(tmp_path))
    refused(call(["train", "--config", path, "--epochs", "0"], capsys),
            "argument --epochs: must be an integer >= 1, got 0")


# --- the output folder and --resume ---------------------------------------------------------

def test_output_folder_of_user_files_is_refused(tmp_path, capsys):
    out = tmp_path / "experiments"
    out.mkdir()
    (out / "paper.tex").write_text("mine")
    path = write(tmp_path, config(tmp_path, output=str(out)))
    before = snapshot(tmp_path)
    refused(call(["train", "--config", path], capsys),
            "experiments is a directory holding 1 entries", "not a seqvpr training folder")
    (tmp_path / "afile").write_text("x")
    refused(call(["train", "--config", path, "--output", tmp_path / "afile"], capsys),
            "afile is a file; a seqvpr training folder is a directory")
    assert changed(before, snapshot(tmp_path)) == {"afile"}


def state(**over) -> dict:
    base = {"format": TRAIN_FORMAT, "version": TRAIN_VERSION,
            "config": {"model": {"encoder": {"name": "pixels"}, "aggregator": {"name": "avg"}}},
            "net": {}, "optimizer": {}, "scheduler": None, "scaler": {}, "epoch": 1, "step": 3,
            "best": 0.5, "bad_epochs": 0, "history": [], "torch_rng": torch.get_rng_state()}
    return {**base, **over}


def _run_dir(tmp_path, payload) -> None:
    (tmp_path / "run").mkdir(exist_ok=True)
    if isinstance(payload, bytes):
        (tmp_path / "run" / "last.ckpt").write_bytes(payload)
    else:
        torch.save(payload, tmp_path / "run" / "last.ckpt")


def test_a_previous_run_is_not_restarted_over_without_resume(tmp_path, capsys):
    _run_dir(tmp_path, state())
    path = write(tmp_path, config(tmp_path))
    before = snapshot(tmp_path)
    refused(call(["train", "--config", path], capsys), "holds a run (last.ckpt); continue it "
                                                       "with --resume")
    assert changed(before, snapshot(tmp_path)) == set()


@pytest.mark.parametrize("payload,message", [
    (None, "--resume: no training state"),
    (b"PK\x03\x04 truncated", "training state {p} cannot be read"),
    (b"", "training state {p} cannot be read"),
    ({"weights": torch.zeros(2)}, "{p} is not a seqvpr training state"),
    ({"format": TRAIN_FORMAT, "version": TRAIN_VERSION}, "missing keys ['bad_epochs', 'best'"),
    (state(version=7), "has training-state version 7"),
    (state(epoch="3"), "{p}: epoch must be an integer, got a string ('3')"),
    (state(extra=1), "unknown keys ['extra']"),
    (state(), "was trained with model {{'encoder': {{'name': 'pixels'}}"),
])
def test_damaged_or_foreign_training_states_are_refused_on_resume(tmp_path, capsys, payload,
                                                                  message):
    if payload is not None:
        _run_dir(tmp_path, payload)
    path = write(tmp_path, config(tmp_path))
    before = snapshot(tmp_path)
    refused(call(["train", "--config", path, "--resume"], capsys),
            message.format(p=tmp_path / "run" / "last.ckpt"))
    assert changed(before, snapshot(tmp_path)) == set()


# --- dataset readers behind a config ---------------------------------------------------------

def test_dataset_folders_with_fifos_and_folders_named_like_images(tmp_path, nordland, caplog):
    from conftest import copy_frames

    from seqvpr_core.data.pairs import read_dataset

    for season in ("summer", "winter"):
        folder = copy_frames(nordland / season, tmp_path / season, 5)
        os.mkfifo(folder / "images-99998.png")
        (folder / "images-99999.png").mkdir()
    with no_hang():
        pair = read_dataset("nordland", tmp_path)["test"][0]
        assert len(pair.db) == 5 and len(list(pair.db.batches(8))[0][1]) == 5
    assert "skipped 2 entries named like images" in caplog.text


def test_dataset_tables_that_are_not_text_or_not_json_name_the_file(tmp_path):
    from test_datasets_msls import make_city

    from seqvpr_core.data.pairs import read_dataset

    make_city(tmp_path / "msls", "cph")
    raw = tmp_path / "msls" / "train_val" / "cph" / "query" / "raw.csv"
    raw.write_bytes(b"\xff\xfe" + raw.read_bytes())
    with pytest.raises(ValueError, match=f"MSLS table {raw} is not UTF-8 text"):
        read_dataset("msls", tmp_path / "msls", cities={"test": ["cph"]})["test"]
    tables = tmp_path / "nuscenes" / "v1.0-trainval"
    tables.mkdir(parents=True)
    for name in ("scene", "sample", "sample_data", "ego_pose", "calibrated_sensor", "sensor",
                 "log"):
        (tables / f"{name}.json").write_text("[]")
    (tables / "sample.json").write_text('[{"token": ')
    with pytest.raises(ValueError, match="nuScenes table .*sample.json is not valid JSON"):
        read_dataset("nuscenes", tmp_path / "nuscenes")["test"]


def test_a_damaged_feature_cache_is_named(tmp_path, summer):
    from seqvpr_core.models import build_model
    from seqvpr_core.train.features import cache_path, cached_features

    model = build_model("pixels+avg")
    part = summer.subset(0, 4)
    path = cache_path(tmp_path, model, part)
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match=f"feature cache {path} is damaged"):
        cached_features(model, part, tmp_path, progress=False)
