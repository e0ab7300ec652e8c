"""seqvpr models: what the registries hold."""

from __future__ import annotations

import argparse
import inspect

import torch

from ..models import create_aggregator, create_encoder, list_aggregators, list_encoders
from ..models.registry import AGGREGATORS

PROBE_DIM = 256  # frame feature size used to show aggregator output sizes
PROBE_LEN = 5


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list frame encoders and sequence aggregators",
                       description="Every registered encoder (feature size, parameters) and "
                                   f"aggregator (output size for {PROBE_DIM}-d frame features "
                                   "and whether it accepts any window length).")
    p.set_defaults(run=run)


def _params(module: torch.nn.Module) -> int:
    return sum(t.numel() for t in module.parameters())


def run(args: argparse.Namespace) -> int:
    print(f"{'encoder':<22}{'frame dim':>10}{'params':>12}")
    for name in list_encoders():
        enc = create_encoder(name, pretrained=False)
        print(f"{name:<22}{enc.dim:>10}{_params(enc):>12,}")
    print(f"\n{'aggregator':<22}{'out dim (D=' + str(PROBE_DIM) + ')':>16}{'params':>12}"
          f"{'any length':>12}")
    for name in list_aggregators():
        takes_len = "length" in inspect.signature(AGGREGATORS[name]).parameters
        agg = create_aggregator(name, **({"length": PROBE_LEN} if takes_len else {}))
        out = agg.out_dim(PROBE_DIM)
        note = "yes" if agg.variable_length else f"no (L={PROBE_LEN})"
        print(f"{name:<22}{out:>16}{_params(agg):>12,}{note:>12}")
    return 0
