"""Options and helpers shared by several subcommands.

Only light imports at module level (see :mod:`.main`): the option builders run for
``--help``; the helpers that load models import torch when they are called.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from ..catalog import AGGREGATORS, ENCODERS, RUNTIMES
from ..limits import BATCH, STRIDE, WINDOW_LENGTH

if TYPE_CHECKING:
    from ..models import SequenceModel
    from ..stream import StreamingLocalizer, WindowConfig

LOG = logging.getLogger("seqvpr")
DEFAULT_WINDOW = 10  # frames, for models that take any window length


class UsageError(ValueError):
    """Options that do not go together; ``seqvpr`` prints it and exits 2."""


def add_model_options(p: argparse.ArgumentParser, required: bool = True,
                      what: str = "") -> None:
    p.add_argument("--model", required=required, metavar="SPEC",
                   help=f"{what}a checkpoint (.pt), a model config (.yaml/.json) or "
                        "'encoder+aggregator' with pretrained weights; encoders: "
                        f"{', '.join(ENCODERS)}; aggregators: {', '.join(AGGREGATORS)}")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the model runs; auto picks CUDA when available")
    p.add_argument("--half", action="store_true",
                   help="run the model in float16 (CUDA only)")
    p.add_argument("--runtime", default="auto", choices=RUNTIMES,
                   help="encoder inference: onnxruntime (float32 on the CPU, CNN and CCT "
                        "encoders: 1.1-2.4x faster per frame, same descriptors) or torch; "
                        "auto: onnxruntime wherever it can run, torch elsewhere")
    p.add_argument("--batch-size", type=BATCH.parse, default=32,
                   help="frames encoded per forward pass")


def add_window_options(p: argparse.ArgumentParser,
                       default: str = "the model's own length if it has one, else "
                                      f"{DEFAULT_WINDOW}") -> None:
    p.add_argument("--window", type=WINDOW_LENGTH.parse, default=None, metavar="L",
                   help=f"window length in frames (also the shortest window unless --min-len; "
                        f"default: "
                        f"{default})")
    p.add_argument("--min-len", type=WINDOW_LENGTH.parse, default=None,
                   help="shortest window, used while a stream starts (default: --window)")
    p.add_argument("--stride", type=STRIDE.parse, default=None,
                   help="new frames between two windows (default: 1)")


def load_model_from_args(args: argparse.Namespace, spec: str | dict | None = None,
                         window: int | None = None) -> SequenceModel:
    from ..models import build_model

    model = build_model(spec if spec is not None else args.model, window=window,
                        device=args.device, half=args.half, runtime=args.runtime)
    LOG.info("model %s: %d-d descriptors on %s, encoder in %s", model.name,
             model.descriptor_dim, model.device, model.encoder.runtime_name)
    return model


def load_model_and_window(args: argparse.Namespace) -> tuple[SequenceModel, WindowConfig]:
    """The model of ``--model`` and the windows of ``--window/--min-len/--stride``,
    checked against each other before any frame is read: a fixed-length model
    (cat, fc, mixer, a trained checkpoint) takes only its own length, and is the
    default length when --window is not given."""
    from ..stream import WindowConfig, check_window

    model = load_model_from_args(args, window=args.window or DEFAULT_WINDOW)
    length = args.window or model.fixed_length or DEFAULT_WINDOW
    check_min_len(args, length)
    window = WindowConfig(args.min_len or length, length, args.stride or 1)
    check_window(model, window)
    return model, window


def check_min_len(args: argparse.Namespace, length: int) -> None:
    """--min-len against the window length it starts, named as the user gave it."""
    if args.min_len is not None and args.min_len > length:
        raise UsageError(f"--min-len {args.min_len} is longer than the window ({length} "
                         "frames)")


def set_threads(n: int) -> None:
    """Intra-op threads of torch and FAISS: one number for both."""
    import faiss
    import torch

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)


def report_stream(localizer: StreamingLocalizer) -> None:
    """What the stream repaired, in one line (the log said it once already)."""
    s = localizer.stats
    notes = [f"{n} {what}" for n, what in ((s.time_resets, "time resets (stamps went back)"),
                                            (s.duplicate_stamps, "duplicate stamps"),
                                            (s.invalid_poses, "non-finite poses dropped"))
             if n]
    if notes:
        print("stream: " + ", ".join(notes))
