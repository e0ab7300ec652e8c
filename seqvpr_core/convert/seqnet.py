"""seqNet (Garg & Milford, RA-L 2021; oravus/seqNet): the temporal-convolution head.

The authors' ``checkpoint.pth.tar`` / ``model_best.pth.tar`` is ``{epoch,
state_dict, recalls, best_score, optimizer, parallel}``; the model's ``pool`` is
``Sequential(seqNet, Flatten, L2Norm)``, so the head is ``pool.0.conv.{weight,
bias}`` ([outDims, D, w]). The file holds only the head: the frame descriptors it
was trained on (NetVLAD+PCA of VGG-16 in the paper) come from ``--config``'s
encoder. The window length is not stored: the head takes any L >= w.
"""

from __future__ import annotations

from typing import Any

import torch

from ..models import SequenceModel
from ..models.aggregators.fusion import SeqNet
from . import register_converter, register_fixture
from .release import require, strip_prefix, unprefixed

KEYS = (r"pool\.0\.conv\.weight", r"pool\.0\.conv\.bias")


def head_from_release(release: Any) -> SeqNet:
    state = unprefixed(release)
    require(state, KEYS, "seqNet")
    conv = strip_prefix(state, "pool.0.conv.")
    out_dim, in_dim, kernel = conv["weight"].shape
    head = SeqNet(in_dim, out_dim, kernel)
    head.conv.load_state_dict(conv)
    return head


@register_converter("seqnet")
def convert_seqnet(release: Any, config: dict[str, Any]) -> SequenceModel:
    head = head_from_release(release)
    if "encoder" not in config:
        raise ValueError("a seqNet file holds only the sequence head; give --config with "
                         f"encoder: {{...}} making the {head.conv.in_channels}-d frame "
                         "descriptors it was trained on")
    model = SequenceModel({**config, "aggregator": {
        "name": "seqnet", "out_dim": head.conv.out_channels,
        "kernel": head.conv.kernel_size[0]}})
    if model.frame_dim != head.conv.in_channels:
        raise ValueError(f"the seqNet head takes {head.conv.in_channels}-d frame descriptors, "
                         f"the --config encoder makes {model.frame_dim}-d ones")
    model.aggregator.load_state_dict(head.state_dict())
    return model


@register_fixture("gen_seqnet", verifies=("seqnet",))
def run_fixture(fixture) -> dict[str, torch.Tensor]:
    head = head_from_release(fixture.release()).eval()
    x = fixture.io["frame_descriptors"]
    outputs = {f"descriptor_L{n}": head(x[:, :n]) for n in fixture.config["lengths"]}
    seq_l = fixture.config["seqL"]
    outputs[f"conv_mean_L{seq_l}"] = head.temporal_mean(x[:, :seq_l])
    return outputs
