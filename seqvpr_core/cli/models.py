"""seqvpr models: what the registries hold, with sizes and parameter counts."""

from __future__ import annotations

import argparse
import inspect

PROBE_DIM = 256  # a global frame vector, to show vector aggregators' sizes
PROBE_GRID, PROBE_TOKEN_DIM = (24, 24), 384  # cct384's tokens, for token aggregators
PROBE_LEN = 5
# Early-fusion aggregators, shown on the frame output they are built for.
PROBE_FRAMES = {"timesformer": ((14, 14), 768),  # vit, output=patches
                "r2plus1d": ((112, 112), 3)}  # rgb
EARLY_FUSION_NOTE = (
    "\nStreaming encodes each frame once and re-aggregates the ring's cached features for\n"
    "every window: late and intermediate fusion (SeqVLAD's taxonomy) keep all per-frame\n"
    "work in the encoder. * Early fusion cannot: its encoder only embeds each frame\n"
    "(rgb: pixels; vit output=patches) and the video network re-runs over all L frames\n"
    "of every window, so a new frame costs about a whole window.")


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list frame encoders and sequence aggregators",
                       description="Every registered encoder (per-frame output, input size, "
                                   "parameters) and aggregator (descriptor size, parameters, "
                                   "whether it accepts any window length, where it fuses the "
                                   "frames, whether streaming encodes each frame once). "
                                   f"Aggregator sizes are for {PROBE_DIM}-d frame vectors or, "
                                   "for token aggregators, "
                                   f"{PROBE_GRID[0]}x{PROBE_GRID[1]} tokens of "
                                   f"{PROBE_TOKEN_DIM}-d (cct384); early fusion on the frames "
                                   "of its own encoder. 'authors' names the "
                                   "reference fixtures on which `seqvpr reference-check` "
                                   "finds the model equivalent to its authors' code (with "
                                   "the authors' options, e.g. normalize: false for cat, fc "
                                   "and seqgem).")
    p.set_defaults(run=run)


def _params(module) -> int:
    return sum(t.numel() for t in module.parameters())


def _build(fn, **kw):
    """Shapes and counts only: build on the meta device (no memory, no init cost)."""
    import torch

    try:
        with torch.device("meta"):
            return fn(**kw)
    except (NotImplementedError, RuntimeError):
        return fn(**kw)


def _aggregator_row(name: str) -> tuple[str, int, int, str, str, str]:
    from ..models import create_aggregator
    from ..models.registry import AGGREGATORS

    params = inspect.signature(AGGREGATORS[name]).parameters
    kw = {"length": PROBE_LEN} if "length" in params else {}
    in_dim = PROBE_DIM
    if "grid" in params:
        grid, in_dim = PROBE_FRAMES.get(name, (PROBE_GRID, PROBE_TOKEN_DIM))
        kw["grid"] = grid
    if "in_dim" in params:
        kw["in_dim"] = in_dim
    agg = _build(create_aggregator, name=name, **kw)
    if agg.input_kind == "tokens+patches":  # the tokens and the tokenizer's, side by side
        in_dim = kw["in_dim"] = 2 * PROBE_TOKEN_DIM
        agg = _build(create_aggregator, name=name, **kw)
    frame = f"{kw['grid'][0] * kw['grid'][1]}x{in_dim}" if "grid" in params else str(in_dim)
    note = "yes" if agg.variable_length else f"no (L={PROBE_LEN})"
    fusion = "early *" if agg.fusion == "early" else agg.fusion
    once = "yes" if agg.encodes_frames_once else "no *"
    return frame, agg.out_dim(in_dim), _params(agg), note, fusion, once


def run(args: argparse.Namespace) -> int:
    from ..convert import VERIFIED
    from ..models import create_encoder, list_aggregators, list_encoders

    def authors(name: str) -> str:
        return ", ".join(VERIFIED.get(name, [])) or "-"

    print(f"{'encoder':<22}{'frame output':>14}{'input':>10}{'params':>14}{'runtimes':>20}"
          f"  authors")
    for name in list_encoders():
        enc = _build(create_encoder, name=name, pretrained=False)
        shape = "x".join(map(str, enc.out_shape))
        size = "x".join(map(str, enc.preprocess.size))
        runtimes = "torch, onnxruntime" if enc.exportable else "torch"
        print(f"{name:<22}{shape:>14}{size:>10}{_params(enc):>14,}{runtimes:>20}"
              f"  {authors(name)}")
    pools = [f"{k.removeprefix('pool=')} ({authors(k)})" for k in sorted(VERIFIED)
             if k.startswith("pool=")]
    if pools:
        print(f"CNN encoder heads (pool=...) equivalent to their authors': {', '.join(pools)}")
    print(f"\n{'aggregator':<22}{'frame input':>12}{'descriptor':>12}{'params':>14}"
          f"{'any length':>13}{'fusion':>14}  {'frames encoded once':<21}authors")
    for name in list_aggregators():
        frame, out, n, note, fusion, once = _aggregator_row(name)
        print(f"{name:<22}{frame:>12}{out:>12}{n:>14,}{note:>13}{fusion:>14}  {once:<21}"
              f"{authors(name)}")
    print(EARLY_FUSION_NOTE)
    return 0
