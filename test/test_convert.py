"""Authors' checkpoints: safe reading, converters, and the reference fixtures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seqvpr_core.convert import convert, read_release
from seqvpr_core.convert.reference import check_fixture

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
FIXTURES = sorted(p for p in REFERENCE.glob("*") if (p / "fixture.json").is_file())
# Fixtures whose runner is not written yet: each must fail (strict xfail), and leaves
# this set the moment it passes.
PENDING = {"adapt_stformer", "stformer", "vgt_tvgnet_cct384_seqvlad"}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seqvpr_core.cli.main", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("fixture", [
    pytest.param(p, id=p.name, marks=[pytest.mark.xfail(strict=True, reason="no runner yet")]
                 if p.name in PENDING else []) for p in FIXTURES])
def test_reference_fixture_is_reproduced(fixture):
    checks = check_fixture(fixture)
    bad = [c for c in checks if not c.ok]
    assert checks and not bad, bad


def test_reference_check_command_reports_each_output_and_its_tolerance():
    done = _cli("reference-check", str(REFERENCE / "seqnet_L5_w3"), str(REFERENCE / "seqnet_L5_w5"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "descriptor_L10" in done.stdout and "atol 1e-05" in done.stdout


def test_reference_check_fails_when_an_output_differs(tmp_path):
    fixture = tmp_path / "seqnet"
    fixture.mkdir()
    for name in ("checkpoint.pth", "fixture.json"):
        (fixture / name).write_bytes((REFERENCE / "seqnet_L5_w3" / name).read_bytes())
    io = torch.load(REFERENCE / "seqnet_L5_w3" / "io.pt", weights_only=True)
    io["descriptor_L5"] = io["descriptor_L5"] + 1e-3
    torch.save(io, fixture / "io.pt")
    done = _cli("reference-check", str(fixture), str(tmp_path / "nothing-here"))
    assert done.returncode == 1
    assert "FAIL descriptor_L5" in done.stdout and "ok   descriptor_L3" in done.stdout
    assert "is not a reference fixture" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_release_files_with_numpy_scalars_load_without_unpickling_code(tmp_path):
    """seqNet/NetVLAD/vg-transformers training files store recalls as numpy objects."""
    release = torch.load(REFERENCE / "seqnet_L5_w3" / "checkpoint.pth", weights_only=True)
    release["recalls"] = {1: np.float64(0.5), 5: np.float64(0.75)}
    release["best_score"] = np.float64(0.75)
    release["history"] = np.array([0.1, 0.2])
    torch.save(release, tmp_path / "model_best.pth.tar")
    loaded = read_release(tmp_path / "model_best.pth.tar")
    assert loaded["best_score"] == 0.75 and loaded["history"].tolist() == [0.1, 0.2]


def test_release_files_with_code_are_refused(tmp_path):
    torch.save({"state_dict": {}, "hook": subprocess.Popen}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        read_release(tmp_path / "evil.pth")


def test_a_file_of_another_format_names_the_missing_and_unexpected_keys(tmp_path):
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"missing keys matching .*pool.*unexpected keys "
                                         r"\['encoder.weight'\]"):
        convert("seqnet", tmp_path / "other.pth", {"encoder": "pixels"})


def test_converted_seqnet_is_an_ordinary_model(tmp_path):
    """The file holds the head; --config gives the frame encoder it was trained on."""
    config = tmp_path / "encoder.yaml"
    config.write_text("encoder: {name: pixels, image_size: [8, 12], patch: 4}\n")  # 96-d
    out = tmp_path / "seqnet.pt"
    done = _cli("convert", "--from", "seqnet", str(REFERENCE / "seqnet_L5_w3" / "checkpoint.pth"),
                "--config", str(config), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "any window length" in done.stdout
    from seqvpr_core.models import load_model

    model = load_model(out)
    frames = np.random.default_rng(0).integers(0, 255, (6, 32, 64, 3), dtype=np.uint8)
    with torch.inference_mode():
        feats = model.encode_frames(frames)
        assert model.aggregate(feats[None, :4]).shape == (1, 64)
    encoder = {"name": "pixels", "image_size": [8, 12], "patch": 4}
    fixture_head = convert("seqnet", REFERENCE / "seqnet_L5_w3" / "checkpoint.pth",
                           {"encoder": encoder}).aggregator
    torch.testing.assert_close(model.aggregator.conv.weight, fixture_head.conv.weight)
