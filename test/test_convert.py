"""Authors' checkpoints: safe reading, converters, and the reference fixtures."""

from __future__ import annotations

import json
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
PENDING: set[str] = set()


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


def _converted(fmt: str, fixture: str, tmp_path: Path):
    """The release converted, saved and loaded back as any seqvpr model file."""
    from seqvpr_core.models import load_model

    convert(fmt, REFERENCE / fixture / "checkpoint.pth").save(tmp_path / f"{fixture}.pt")
    return load_model(tmp_path / f"{fixture}.pt")


def _frames(fixture: str) -> torch.Tensor:
    io = torch.load(REFERENCE / fixture / "io.pt", weights_only=True)
    return io, io["frames_u8"].permute(0, 2, 3, 1).numpy()


def test_converted_stformer_streams_each_frame_once_to_the_authors_descriptor(tmp_path):
    """The STformer release as an ordinary model: the localizer encodes each frame once
    (tokenizer + spatial branch in the ring), the temporal branch runs per window."""
    from seqvpr_core.maps import PlaceMap
    from seqvpr_core.stream.localizer import LocalizerConfig, StreamingLocalizer, WindowConfig

    out = tmp_path / "stformer.pt"
    done = _cli("convert", "--from", "stformer", str(REFERENCE / "stformer" / "checkpoint.pth"),
                "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "windows of 5 frames" in done.stdout
    from seqvpr_core.models import load_model

    model = load_model(out)
    assert model.config["encoder"] == {"name": "cct384", "layers": 1, "output": "tokens+patches"}
    agg = model.config["aggregator"]
    assert (agg["temporal_layers"], agg["window"], agg["stride"], agg["heads"]) == (1, 6, 3, 6)
    io, frames = _frames("stformer")
    clip = io["clip_index"][0].tolist()
    calls = []
    model.encoder.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    loc = StreamingLocalizer(model, PlaceMap(model.descriptor_dim),
                             LocalizerConfig("mapping", WindowConfig.fixed(5)))
    built = loc.feed([frames[i] for i in clip], [i * 10**8 for i in range(5)])
    assert sum(calls) == 5 and len(built) == 1
    atol = json.loads((REFERENCE / "stformer" / "fixture.json").read_text())["tolerance"]["atol"]
    diff = np.abs(built[0].descriptor - io["descriptor"][0].numpy()).max()
    assert diff <= atol["descriptor"]


def test_stformer_config_may_not_contradict_the_relative_position_tables():
    from seqvpr_core.convert.stformer import stformer_from_release

    release = read_release(REFERENCE / "stformer" / "checkpoint.pth")
    with pytest.raises(ValueError, match=r"\{'temporal_frames': 4\} contradict"):
        stformer_from_release(release, {"aggregator": {"temporal_frames": 4}})
    with pytest.raises(ValueError, match="length 7 is not a multiple of the 5 frames"):
        stformer_from_release(release, {"aggregator": {"length": 7}})
    model = stformer_from_release(release, {"aggregator": {"length": 5, "stride": 3}})
    assert model.fixed_length == 5


def test_a_converted_stformer_takes_windows_of_several_attention_spans():
    """The authors' --seq_length 10 on a release whose attention spans 5 frames: each
    5 consecutive frames attend among themselves, SeqVLAD pools all 10."""
    from seqvpr_core.convert.stformer import stformer_from_release

    release = read_release(REFERENCE / "stformer" / "checkpoint.pth")
    five = stformer_from_release(release, {})
    ten = stformer_from_release(release, {"aggregator": {"length": 10}})
    assert ten.fixed_length == 10 and ten.config["aggregator"]["temporal_frames"] == 5
    io, frames = _frames("stformer")
    with torch.inference_mode():
        feats = five.encode_frames(frames)[io["clip_index"]]  # [2, 5, N, 2C]
        _, temporal = five.aggregator.branches(feats)
        _, both_temporal = ten.aggregator.branches(feats.flatten(0, 1)[None])
        assert ten.aggregate(feats.flatten(0, 1)[None]).shape == (1, five.descriptor_dim)
    torch.testing.assert_close(both_temporal[0], temporal.flatten(0, 1))


def test_converted_adapt_stformer_takes_any_window_length(tmp_path):
    model = _converted("adapt-stformer", "adapt_stformer", tmp_path)
    assert model.variable_length
    agg = model.config["aggregator"]
    assert (agg["heads"], agg["levels"], agg["points"], agg["frame_reshape"]) == (8, 1, 8, "view")
    io, frames = _frames("adapt_stformer")
    with torch.inference_mode():
        feats = model.encode_frames(frames)
        for n in (3, 10):
            torch.testing.assert_close(model.aggregate(feats[io[f"clip_index_L{n}"]]),
                                       io[f"descriptor_L{n}"], atol=1e-5, rtol=0)


def test_adapt_stformer_levels_and_points_come_from_the_shapes_or_the_config():
    """heads * levels * points outputs: 8 heads x 16 are the authors' default 2 levels
    of 8 points unless --config says otherwise."""
    release = read_release(REFERENCE / "adapt_stformer" / "checkpoint.pth")
    sca = "module.detr.spatial_cross_attention."
    state = release["state_dict"]
    for name in ("sampling_offsets", "attention_weights"):
        for part in ("weight", "bias"):
            state[f"{sca}{name}.{part}"] = torch.cat([state[f"{sca}{name}.{part}"]] * 2)
    from seqvpr_core.convert.adapt_stformer import adapt_stformer_from_release

    attn = adapt_stformer_from_release(release, {}).aggregator.cross_attention
    assert (attn.levels, attn.points) == (2, 8)
    attn = adapt_stformer_from_release(
        release, {"aggregator": {"points": 16}}).aggregator.cross_attention
    assert (attn.levels, attn.points) == (1, 16)
    with pytest.raises(ValueError, match="not 3 levels x 8 points"):
        adapt_stformer_from_release(release, {"aggregator": {"levels": 3, "points": 8}})
    for bad in ({"levels": 0}, {"points": 0}, {"heads": 0}, {"points": 2.5}):
        with pytest.raises(ValueError, match="must be integers >= 1"):
            adapt_stformer_from_release(release, {"aggregator": bad})



def _adapt_fixture_variant(tmp_path: Path, config: dict, frames: torch.Tensor,
                           model_config: dict) -> Path:
    """The visible Adapt-STformer fixture with another config and frames; its outputs are
    our converter's, built directly with ``model_config``: the fixture passes only if
    the runner builds the same model from the config and the frames."""
    from seqvpr_core.convert.adapt_stformer import adapt_stformer_from_release

    src = REFERENCE / "adapt_stformer"
    meta = json.loads((src / "fixture.json").read_text())
    meta["config"] = {**meta["config"], **config}
    meta["tolerance"]["atol"] = {"descriptor_L3": 1e-6, "descriptor_L5": 1e-6}
    release = read_release(src / "checkpoint.pth")
    model = adapt_stformer_from_release(release, model_config)
    io = torch.load(src / "io.pt", weights_only=True)
    io = {"frames_u8": frames, **{k: io[k] for k in ("clip_index_L3", "clip_index_L5")}}
    with torch.inference_mode():
        feats = model.encode_frames(frames.permute(0, 2, 3, 1).contiguous())
        for n in (3, 5):
            io[f"descriptor_L{n}"] = model.aggregate(feats[io[f"clip_index_L{n}"]])
    fixture = tmp_path / "adapt"
    fixture.mkdir()
    (fixture / "checkpoint.pth").write_bytes((src / "checkpoint.pth").read_bytes())
    (fixture / "fixture.json").write_text(json.dumps(meta))
    torch.save(io, fixture / "io.pt")
    return fixture


def test_adapt_stformer_fixture_runner_builds_heads_and_frame_size_from_the_fixture(tmp_path):
    """The heads (Bev_RGB_Fusion's argument) and the frame size are not in the weights:
    8 heads x 8 points read as 4 heads x 16, on 376x372 frames the CCT tokenises to
    its 24x24 table unresized."""
    frames = torch.load(REFERENCE / "adapt_stformer" / "io.pt", weights_only=True)["frames_u8"]
    frames = frames[:, :, 4:380, 6:378].contiguous()
    fixture = _adapt_fixture_variant(
        tmp_path, {"heads": 4, "k_points": 16}, frames,
        {"aggregator": {"heads": 4, "points": 16}, "encoder": {"image_size": [376, 372]}})
    checks = check_fixture(fixture)
    assert [c.name for c in checks if c.ok] == ["descriptor_L3", "descriptor_L5"], checks

def test_converted_tvgnet_is_cct_tokens_and_seqvlad(tmp_path):
    model = _converted("vg-transformers", "vgt_tvgnet_cct384_seqvlad", tmp_path)
    assert model.variable_length and model.name == "cct384+seqvlad"
    io, frames = _frames("vgt_tvgnet_cct384_seqvlad")
    with torch.inference_mode():
        out = model.aggregate(model.encode_frames(frames)[io["clip_index"]])
    torch.testing.assert_close(out, io["descriptor"], atol=1e-5, rtol=0)


def test_a_cat_tvgnet_needs_its_window_length_and_other_files_are_refused(tmp_path):
    release = read_release(REFERENCE / "vgt_tvgnet_cct384_seqvlad" / "checkpoint.pth")
    release["model_state_dict"] = {k: v for k, v in release["model_state_dict"].items()
                                   if ".aggregator." not in k}
    torch.save(release, tmp_path / "cat.pth")
    with pytest.raises(ValueError, match=r"CAT stores no window length.*aggregator: \{length"):
        convert("vg-transformers", tmp_path / "cat.pth")
    model = convert("vg-transformers", tmp_path / "cat.pth", {"aggregator": {"length": 3}})
    assert model.name == "cct384+cat" and model.encoder.output == "seqpool"
    with pytest.raises(ValueError, match=r"--from stformer.*unexpected keys \['detr"):
        convert("stformer", REFERENCE / "adapt_stformer" / "checkpoint.pth")
    with pytest.raises(ValueError, match=r"--from adapt-stformer.*missing keys matching.*detr"):
        convert("adapt-stformer", REFERENCE / "stformer" / "checkpoint.pth")


def test_a_config_whose_model_is_not_a_mapping_is_refused_naming_it(tmp_path):
    config = tmp_path / "whole.yaml"
    config.write_text("model: resnet18\n")  # a whole config, its model part a name
    done = _cli("convert", "--from", "seqnet", str(REFERENCE / "seqnet_L5_w3" / "checkpoint.pth"),
                "--config", str(config), "--out", str(tmp_path / "m.pt"))
    assert done.returncode == 2, done.stderr
    assert f"--config {config}: model must hold a mapping" in done.stderr
    assert not (tmp_path / "m.pt").exists()


def test_a_converted_cct_runs_frames_of_any_size_its_position_grid_fits():
    """The authors' CCT takes any frame size whose token grid matches its position table
    (380 x 372 -> 24 x 24): named in --config, such frames are encoded as they are, not
    resized to 384 x 384; another grid resizes the table."""
    path = REFERENCE / "vgt_tvgnet_cct384_seqvlad" / "checkpoint.pth"
    square = convert("vg-transformers", path)
    odd = convert("vg-transformers", path, {"encoder": {"image_size": [380, 372]}})
    assert tuple(odd.config["encoder"]["image_size"]) == (380, 372)
    assert odd.encoder.grid == (24, 24) and odd.encoder.preprocess.size == (380, 372)
    assert torch.equal(odd.encoder.classifier.positional_emb,
                       square.encoder.classifier.positional_emb)
    frames = np.random.default_rng(1).integers(0, 255, (1, 380, 372, 3), dtype=np.uint8)
    with torch.inference_mode():
        ours = odd.encode_frames(frames)
        unresized = square.encoder(odd.preprocess(frames))
        resized = square.encode_frames(frames)
    torch.testing.assert_close(ours, unresized)
    assert (ours - resized).abs().max() > 0.1
    wide = convert("vg-transformers", path, {"encoder": {"image_size": [224, 320]}})
    assert wide.encoder.grid == (14, 20)
    assert wide.encoder.classifier.positional_emb.shape == (1, 280, 384)
