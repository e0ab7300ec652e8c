"""Checkpoints and weight files under attack, through the API a researcher calls:
``load_model``, ``build_model``, encoder ``weights=`` files and ``SequenceModel.save``.
(The same files through ``seqvpr build-map --model`` are in test_hostile_build_map.)"""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from seqvpr_core.inputs import InputError
from seqvpr_core.models import build_model, load_model
from seqvpr_core.outputs import OutputError


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    build_model("pixels+avg").save(path)
    return path


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/seqvpr-pwned",))


@pytest.mark.parametrize("make,message", [
    (lambda d, c: (d / "t.pt").write_bytes(c.read_bytes()[:-100]) and d / "t.pt",
     "cannot be read"),
    (lambda d, c: (d / "z.pt").write_bytes(b"") or d / "z.pt", "cannot be read"),
    (lambda d, c: (d / "j.pt").write_bytes(b'{"format": "seqvpr-model"}') and d / "j.pt",
     "cannot be read"),
    (lambda d, c: torch.save([1, 2], d / "l.pt") or d / "l.pt", "is not a seqvpr model"),
    (lambda d, c: torch.save({"format": "seqvpr-model", "version": 2}, d / "v.pt") or
     d / "v.pt", "has checkpoint version 2"),
    (lambda d, c: torch.save({"format": "seqvpr-model", "version": 1, "config": [],
                              "state_dict": {}}, d / "s.pt") or d / "s.pt",
     "config must be a mapping, got a list"),
    (lambda d, c: torch.save({"format": "seqvpr-model", "version": 1, "extra": 1,
                              "config": {}, "state_dict": {}}, d / "e.pt") or d / "e.pt",
     "unknown keys ['extra']"),
])
def test_load_model_refuses_damaged_and_foreign_files_naming_them(tmp_path, checkpoint, make,
                                                                  message):
    path = make(tmp_path, checkpoint)
    with pytest.raises(InputError) as exc:
        load_model(path)
    assert message in str(exc.value) and str(path) in str(exc.value)


def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "seqvpr-model", "payload": Evil()}, path, pickle_module=pickle)
    if os.path.exists("/tmp/seqvpr-pwned"):
        os.unlink("/tmp/seqvpr-pwned")
    with pytest.raises(InputError, match="cannot be read"):
        load_model(path)
    assert not os.path.exists("/tmp/seqvpr-pwned")


def test_weights_files_for_an_encoder_are_checked_the_same_way(tmp_path, checkpoint):
    bad = tmp_path / "resnet.pth"
    bad.write_bytes(checkpoint.read_bytes()[:200])
    with pytest.raises(InputError, match=r"weights file for encoder 'resnet18' .*cannot be "
                                         r"read"):
        build_model({"encoder": {"name": "resnet18", "weights": str(bad)},
                     "aggregator": {"name": "avg"}})
    os.mkfifo(tmp_path / "fifo.pth")
    with pytest.raises(InputError, match="named pipe"):
        build_model({"encoder": {"name": "resnet18", "weights": str(tmp_path / "fifo.pth")},
                     "aggregator": {"name": "avg"}})
    with pytest.raises(FileNotFoundError, match="not found"):
        build_model({"encoder": {"name": "resnet18", "weights": str(tmp_path / "none.pth")},
                     "aggregator": {"name": "avg"}})


@pytest.mark.parametrize("config,message", [
    ({"encoder": {"name": "pixels", "colour": True}, "aggregator": "avg"},
     "unexpected keyword argument 'colour'"),
    ({"encoder": "pixels", "aggregator": {"name": "fc"}}, "aggregator 'fc'"),
    ({"encoder": "nope", "aggregator": "avg"}, "unknown encoder 'nope'"),
    ({"encoder": "pixels"}, "model config needs aggregator"),
    ({"encoder": "pixels", "aggregator": "avg", "head": {"dim": 4, "act": "relu"}},
     "head must be {dim: int}"),
])
def test_model_configs_of_the_wrong_shape_say_which_key(config, message):
    with pytest.raises(ValueError) as exc:
        build_model(config)
    assert message in str(exc.value)


def test_save_never_overwrites_a_file_it_did_not_write(tmp_path, checkpoint):
    mine = tmp_path / "thesis.pt"
    mine.write_bytes(b"my own numbers")
    model = build_model("pixels+avg")
    with pytest.raises(OutputError, match="thesis.pt exists and is not a seqvpr model "
                                          "checkpoint"):
        model.save(mine)
    assert mine.read_bytes() == b"my own numbers"
    again = tmp_path / "again.pt"
    again.write_bytes(checkpoint.read_bytes())
    model.save(again)  # a checkpoint seqvpr wrote: replaced
    assert load_model(again).name == "pixels+avg"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_convert_out_never_overwrites_a_file_it_did_not_write(tmp_path, capsys):
    from hostile import call, refused

    mine = tmp_path / "model.pt"
    mine.write_bytes(b"my own model")
    refused(call(["convert", tmp_path / "release.pth", "--from", "seqnet", "--out", mine],
                 capsys), "--out", "model.pt exists and is not a seqvpr model checkpoint")
    assert mine.read_bytes() == b"my own model"
    os.mkfifo(tmp_path / "release.pth")
    refused(call(["convert", tmp_path / "release.pth", "--from", "seqnet", "--out",
                  tmp_path / "new.pt"], capsys), "checkpoint", "is a named pipe")
