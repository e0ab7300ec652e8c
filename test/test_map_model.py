"""A map is self-contained: it carries the checkpoint of the model that made it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, copy_frames

from seqvpr_core.cli.main import main
from seqvpr_core.maps import MapFormatError, PlaceMap
from seqvpr_core.maps.place_map import MANIFEST, MODEL
from seqvpr_core.models import SequenceModel, build_model

FC5 = {"encoder": "pixels", "aggregator": {"name": "fc", "length": 5, "out_dim": 64}}


def trained(seed: int) -> SequenceModel:
    """FC fusion with weights of its own, unlike any fresh build of FC5: what a
    checkpoint a user trained holds."""
    model = SequenceModel(FC5)
    weight = model.aggregator.fc.weight
    with torch.no_grad():
        weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(seed)))
    return model


@pytest.fixture(scope="module")
def folders(tmp_path_factory, nordland):
    root = tmp_path_factory.mktemp("nordland")
    return (copy_frames(nordland / "summer", root / "summer", 40),
            copy_frames(nordland / "winter", root / "winter", 40))


@pytest.fixture(scope="module")
def checkpoint_map(folders, tmp_path_factory):
    """(map dir, checkpoint): a map built from a checkpoint with trained weights."""
    root = tmp_path_factory.mktemp("ckpt_map")
    ckpt = root / "fc5.pt"
    trained(1).save(ckpt)
    assert main(["build-map", "--images", str(folders[0]), "--model", str(ckpt),
                 "--out", str(root / "map")]) == 0
    return root / "map", ckpt


def _seqvpr(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "seqvpr_core.cli.main", *argv], env=env,
                          capture_output=True, text=True, timeout=300)


def test_localize_needs_only_the_map(checkpoint_map, folders, tmp_path):
    """The map carries its checkpoint (checksummed): localize needs no --model."""
    map_dir, ckpt = checkpoint_map
    manifest = json.loads((map_dir / MANIFEST).read_text())
    assert manifest["model"]["file"] == MODEL and MODEL in manifest["files"]
    assert manifest["window"] == {"min_len": 5, "max_len": 5, "stride": 1}  # the model's L
    out = tmp_path / "m.csv"
    run = _seqvpr("localize", "--map", str(map_dir), "--images", str(folders[1]),
                  "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert f"from {map_dir / MODEL}" in run.stdout
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 36
    # the same descriptors as the checkpoint itself gives
    again = tmp_path / "again.csv"
    assert main(["localize", "--map", str(map_dir), "--model", str(ckpt), "--images",
                 str(folders[1]), "--out", str(again)]) == 0
    assert again.read_text() == out.read_text()


def test_another_model_or_a_damaged_model_file_is_refused(checkpoint_map, folders, tmp_path,
                                                          capsys):
    map_dir, _ = checkpoint_map
    other = tmp_path / "other.pt"
    trained(2).save(other)  # same architecture, other weights
    assert main(["localize", "--map", str(map_dir), "--model", str(other), "--images",
                 str(folders[1]), "--out", str(tmp_path / "m.csv")]) == 2
    err = capsys.readouterr().err
    assert "fingerprint" in err and "leave the model out" in err
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for f in map_dir.iterdir():
        (damaged / f.name).write_bytes(f.read_bytes())
    (damaged / MODEL).write_bytes((damaged / MODEL).read_bytes()[:-10])
    with pytest.raises(MapFormatError, match="model.pt is damaged"):
        PlaceMap.load(damaged)
    assert not (tmp_path / "m.csv").exists()


def _as_old_map(map_dir, dst):
    """The same map as seqvpr wrote it before maps carried their model."""
    dst.mkdir()
    for name in ("index.faiss", "keyframes.csv"):
        (dst / name).write_bytes((map_dir / name).read_bytes())
    manifest = json.loads((map_dir / MANIFEST).read_text())
    del manifest["files"][MODEL], manifest["model"]["file"]
    (dst / MANIFEST).write_text(json.dumps(manifest))
    return dst


def test_old_maps_without_a_model_file_load_as_before(checkpoint_map, folders, tmp_path,
                                                      capsys):
    """Config-built models rebuild from the manifest; trained ones need --model."""
    assert main(["build-map", "--images", str(folders[0]), "--model", "pixels+cat",
                 "--window", "5", "--out", str(tmp_path / "cat")]) == 0
    old_cat = _as_old_map(tmp_path / "cat", tmp_path / "old_cat")
    assert PlaceMap.load(old_cat).model_file is None
    assert main(["localize", "--map", str(old_cat), "--images", str(folders[1]),
                 "--out", str(tmp_path / "cat.csv")]) == 0
    old_fc = _as_old_map(checkpoint_map[0], tmp_path / "old_fc")
    assert main(["localize", "--map", str(old_fc), "--images", str(folders[1]),
                 "--out", str(tmp_path / "fc.csv")]) == 2
    assert "use the checkpoint the map was built with (--model)" in capsys.readouterr().err
    assert main(["localize", "--map", str(old_fc), "--model", str(checkpoint_map[1]),
                 "--images", str(folders[1]), "--out", str(tmp_path / "fc.csv")]) == 0


def test_an_old_pixels_map_keeps_the_descriptors_it_was_built_with(folders, tmp_path):
    """pixels changed its default normalisation in the release that put model.pt into
    maps: a map without one rebuilds pixels as it was (patch), never today's default."""
    patch = {"encoder": {"name": "pixels", "normalise": "patch"},
             "aggregator": {"name": "cat", "length": 5}}
    (tmp_path / "patch.yaml").write_text(json.dumps(patch))
    assert main(["build-map", "--images", str(folders[0]), "--model",
                 str(tmp_path / "patch.yaml"), "--window", "5",
                 "--out", str(tmp_path / "map")]) == 0
    old = _as_old_map(tmp_path / "map", tmp_path / "old")
    manifest = json.loads((old / MANIFEST).read_text())
    del manifest["model"]["config"]["encoder"]["normalise"]  # as the old release wrote it
    written = SequenceModel(manifest["model"]["config"])
    manifest["model"]["fingerprint"] = written.fingerprint()
    (old / MANIFEST).write_text(json.dumps(manifest))
    assert written.encoder.normalise == "local_mean"  # today's default would be used

    rebuilt = build_model(PlaceMap.load(old).model_spec())
    assert rebuilt.encoder.normalise == "patch"
    assert main(["localize", "--map", str(old), "--images", str(folders[0]),
                 "--out", str(tmp_path / "self.csv")]) == 0
    with open(tmp_path / "self.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["match1_score"]) > 0.9999 for r in rows)  # each window finds itself

    (old / MANIFEST).write_text(json.dumps({**manifest, "model": {
        **manifest["model"], "fingerprint": "0" * 64}}))  # not what that config makes
    assert PlaceMap.load(old).model_spec()["encoder"] == {"name": "pixels"}


def test_a_slam_map_saved_again_keeps_its_model(checkpoint_map, folders, tmp_path):
    """localize --mode slam --map M --save-map N: N carries M's checkpoint."""
    map_dir, _ = checkpoint_map
    grown = tmp_path / "grown"
    assert main(["localize", "--mode", "slam", "--map", str(map_dir), "--images",
                 str(folders[1]), "--out", str(tmp_path / "s.csv"), "--save-map",
                 str(grown)]) == 0
    assert (grown / MODEL).read_bytes() == (map_dir / MODEL).read_bytes()
    assert len(PlaceMap.load(grown)) == 2 * 36


def test_a_map_refuses_to_save_a_model_that_changed(tmp_path):
    model = build_model(FC5)
    place_map = PlaceMap.for_model(model)
    with torch.no_grad():
        model.aggregator.fc.weight.add_(1.0)
    with pytest.raises(MapFormatError, match="changed"):
        place_map.save(tmp_path / "map")
    assert not (tmp_path / "map").exists()


def test_the_ros_session_opens_a_map_alone(checkpoint_map):
    """The node with only map_path: the map's own model and window."""
    sys.path.insert(0, str(REPO))  # seqvpr_ros is installed by colcon, not by pip
    from seqvpr_ros.params import NodeSettings
    from seqvpr_ros.session import open_session

    session = open_session(NodeSettings.from_values({
        "mode": "localize", "map_path": str(checkpoint_map[0]), "device": "cpu"}))
    assert session.localizer.config.window.max_len == 5
    assert session.model_id.startswith("pixels+fc:")
