"""Options and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import logging

from ..models import (
    SequenceModel,
    build_model,
    list_aggregators,
    list_encoders,
)
from ..models.runtime import RUNTIMES
from ..stream import WindowConfig

LOG = logging.getLogger("seqvpr")


def add_model_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required, metavar="SPEC",
                   help="a checkpoint (.pt), a model config (.yaml/.json) or "
                        "'encoder+aggregator' with pretrained weights; encoders: "
                        f"{', '.join(list_encoders())}; aggregators: "
                        f"{', '.join(list_aggregators())}")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the model runs; auto picks CUDA when available")
    p.add_argument("--half", action="store_true",
                   help="run the model in float16 (CUDA only)")
    p.add_argument("--runtime", default="auto", choices=RUNTIMES,
                   help="encoder inference: onnxruntime (float32 on the CPU, CNN and CCT "
                        "encoders: 1.1-2.4x faster per frame, same descriptors) or torch; "
                        "auto: onnxruntime wherever it can run, torch elsewhere")
    p.add_argument("--batch-size", type=int, default=32,
                   help="frames encoded per forward pass")


def add_window_options(p: argparse.ArgumentParser, default: int | None = 10) -> None:
    p.add_argument("--window", type=int, default=default, metavar="L",
                   help="window length in frames (sets --min-len and --max-len)")
    p.add_argument("--min-len", type=int, default=None,
                   help="shortest window, used while a stream starts (default: --window)")
    p.add_argument("--stride", type=int, default=1, help="new frames between two windows")


def window_from_args(args: argparse.Namespace) -> WindowConfig:
    if args.window is None:
        raise SystemExit("error: give --window")
    return WindowConfig(args.min_len or args.window, args.window, args.stride)


def load_model_from_args(args: argparse.Namespace, spec: str | dict | None = None,
                         window: int | None = None) -> SequenceModel:
    model = build_model(spec if spec is not None else args.model, window=window,
                        device=args.device, half=args.half, runtime=args.runtime)
    LOG.info("model %s: %d-d descriptors on %s, encoder in %s", model.name,
             model.descriptor_dim, model.device, model.encoder.runtime_name)
    return model


def set_threads(n: int) -> None:
    """Intra-op threads of torch and FAISS: one number for both."""
    import faiss
    import torch

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
