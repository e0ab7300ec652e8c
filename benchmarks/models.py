"""Cost of every zoo model at its native input size on this machine.

    python benchmarks/models.py [--window 5] [--repeat 3] [--only SPEC ...]

For each model: parameters, descriptor size, ms per new frame in streaming use
(encode one frame + aggregate the cached window, what the localizer does per
frame), ms per full window (encode all L frames + aggregate, a recompute), each the
median of ``--repeat`` runs, and
peak memory. Each model runs in its own subprocess so the peak resident-set
growth (``ru_maxrss``) is its own; on CUDA the peak allocated memory is used.
Weights are random (pretrained=False) except the EfficientNet-Lite defaults.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS: dict[str, dict] = {
    "pixels+cat": {"encoder": "pixels", "aggregator": {"name": "cat", "length": 0}},
    "efficientnet_lite0+seqgem": {"encoder": "efficientnet_lite0", "aggregator": "seqgem"},
    "efficientnet_lite2+avg": {"encoder": "efficientnet_lite2", "aggregator": "avg"},
    "resnet18+seqgem (JIST)": {"encoder": {"name": "resnet18", "fc_dim": 512},
                               "aggregator": "seqgem"},
    "resnet50+fc": {"encoder": {"name": "resnet50", "fc_dim": 512},
                    "aggregator": {"name": "fc", "length": 0}},
    "vgg16+seqnet": {"encoder": "vgg16", "aggregator": "seqnet"},
    "resnet18/l3+seqvlad": {"encoder": {"name": "resnet18", "layer3_crop": True, "pool": "none"},
                            "aggregator": "seqvlad"},
    "cct224+seqvlad": {"encoder": "cct224", "aggregator": "seqvlad"},
    "cct384+seqvlad (SeqVLAD)": {"encoder": "cct384", "aggregator": "seqvlad"},
    "cct384+stformer": {"encoder": {"name": "cct384", "output": "tokens+patches"},
                        "aggregator": {"name": "stformer", "length": 0}},
    "cct384+adapt_stformer": {"encoder": "cct384", "aggregator": "adapt_stformer"},
    "dinov2_vits14/cls+mixer": {"encoder": {"name": "dinov2_vits14", "output": "cls"},
                                "aggregator": {"name": "mixer", "length": 0}},
    "dinov2_vitb14+seqvlad": {"encoder": "dinov2_vitb14", "aggregator": "seqvlad"},
}
FRAME = Path(__file__).resolve().parents[2] / "shared/data/nordland64/summer/images-00010.png"


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(name: str, window: int, repeat: int, threads: int | None) -> dict:
    """Run in a fresh process: build one model and time it."""
    import numpy as np
    import torch

    if threads:
        torch.set_num_threads(threads)

    from seqvpr_core.models import SequenceModel

    config = json.loads(json.dumps(MODELS[name]))
    if isinstance(config["aggregator"], dict) and "length" in config["aggregator"]:
        config["aggregator"]["length"] = window
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pretrained = config["encoder"] in ("efficientnet_lite0", "efficientnet_lite2")
    base = _maxrss_mb()
    model = SequenceModel(config, pretrained=pretrained).to(device).eval()
    if FRAME.is_file():
        from seqvpr_core.data.images import read_image
        frame = read_image(FRAME)
    else:
        frame = np.random.default_rng(0).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    frames = [frame] * window

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def streaming(ring):
        feats = model.encode_frames([frame])
        ring = torch.cat([ring[1:], feats])
        with torch.inference_mode():
            model.aggregate(ring[None])
        return ring

    def full():
        feats = model.encode_frames(frames)
        with torch.inference_mode():
            model.aggregate(feats[None])

    ring = model.encode_frames(frames)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    timings = {}
    for key, fn in (("frame", lambda: streaming(ring)), ("window", full)):
        fn()  # warm-up (allocator, oneDNN/cuDNN kernel choice for this shape)
        fn()
        runs = []
        for _ in range(repeat):  # the median resists other processes on a shared CPU
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            runs.append((time.perf_counter() - t0) * 1000)
        timings[key] = statistics.median(runs)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else _maxrss_mb() - base)
    return {"model": name, "params": sum(p.numel() for p in model.parameters()),
            "descriptor": model.descriptor_dim, "input": "x".join(map(str,
                                                                     model.encoder.preprocess.size)),
            "ms_frame": timings["frame"], "ms_window": timings["window"], "peak_mb": peak,
            "device": device}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--window", type=int, default=5, help="window length L (frames)")
    p.add_argument("--repeat", type=int, default=5,
                   help="timed repetitions per measurement (the median is shown)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice); 1 gives steadier "
                        "numbers on a machine shared with other jobs")
    p.add_argument("--only", nargs="*", default=None, help="model names (default: all)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure in this process
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.window, args.repeat, args.threads)))
        return 0
    names = args.only or list(MODELS)
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        p.error(f"unknown models {unknown}; known: {list(MODELS)}")
    header = (f"{'model':<28}{'input':>9}{'params':>13}{'desc':>7}{'ms/frame':>10}"
              f"{'ms/window':>11}{'peak MB':>9}")
    print(f"window L={args.window}, threads={args.threads or 'default'}", flush=True)
    print(f"{header}\n{'-' * len(header)}", flush=True)
    for name in names:
        run = subprocess.run([sys.executable, __file__, "--one", name, "--window",
                              str(args.window), "--repeat", str(args.repeat),
                              *(["--threads", str(args.threads)] if args.threads else [])],
                             capture_output=True, text=True)
        if run.returncode:
            print(f"{name:<28} failed: {run.stderr.strip().splitlines()[-1]}", flush=True)
            continue
        r = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{r['model']:<28}{r['input']:>9}{r['params']:>13,}{r['descriptor']:>7}"
              f"{r['ms_frame']:>10.1f}{r['ms_window']:>11.1f}{r['peak_mb']:>9.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
