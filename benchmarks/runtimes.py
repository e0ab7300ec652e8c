"""Encoder runtimes side by side: where torch.compile, ONNX Runtime and half precision help.

    python benchmarks/runtimes.py [--threads 1] [--repeat 30] [--device cpu|cuda]

For each model of the streaming benchmark, its encoder's the time per frame of one frame
alone (a streaming step) and of a batch of 5 (a recompute window, or frames that
queued), in:
- eager PyTorch: what `--runtime torch` runs (Lite: batch norms folded, NHWC);
- torch.compile of the same encoder: inductor's default mode on a CPU,
  "reduce-overhead" (CUDA graphs) on a GPU; compiling takes tens of seconds per
  input shape, printed;
- ONNX Runtime (`--runtime onnxruntime`; CPU only);
- eager float16 (`--half`; CUDA only).
Each is checked against eager float32 (max abs difference of the L2-normalised
features) and printed as a ratio to eager, measured in one interleaved run.
"""

from __future__ import annotations

import time

import torch
from _common import interleaved_ms, nordland_frames, parser, report_load, setup, sync
from streaming import MODELS

BATCHES = (1, 5)


def variants(config: dict, device: str) -> dict[str, torch.nn.Module]:
    """Name -> model, each with the same weights; eager float32 first."""
    from seqvpr_core.models import build_model

    eager = build_model(config, device=device)
    out = {"eager": eager, "compile": eager}  # compiled in measure(), per input shape
    if torch.device(device).type == "cuda":
        half = build_model(config, device=device, half=True)
        half.load_state_dict(eager.state_dict())
        out["half"] = half
    else:
        ort = build_model(config, runtime="onnxruntime")
        ort.load_state_dict(eager.state_dict())
        out["onnxruntime"] = ort
    return out


def measure(config: dict, frames: list, batch: int, repeat: int,
            device: str) -> tuple[dict[str, float], dict[str, float], float]:
    """(ms per frame, max difference to eager) by runtime, and seconds of first calls
    (compiling, exporting)."""
    models = variants(config, device)
    eager = models["eager"]
    x = eager.preprocess(frames[:batch])
    mode = "reduce-overhead" if x.device.type == "cuda" else None
    compiled = torch.compile(eager.encoder, mode=mode, dynamic=False)
    runs = {name: (m.encoder.infer if name != "compile" else compiled, x.to(m.dtype))
            for name, m in models.items()}
    t0 = time.perf_counter()
    with torch.inference_mode():
        reference = eager.encoder.infer(x).float()
        diff = {name: (fn(xi).float() - reference).abs().max().item()
                for name, (fn, xi) in runs.items()}
    compile_s = time.perf_counter() - t0

    def timed(fn, xi):
        def run() -> None:
            with torch.inference_mode():
                fn(xi)
            sync(xi.device)
        return run

    ms = interleaved_ms({name: timed(fn, xi) for name, (fn, xi) in runs.items()}, repeat)
    return {k: v / batch for k, v in ms.items()}, diff, compile_s


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--repeat", type=int, default=30, help="timed calls of each runtime")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--only", choices=list(MODELS), nargs="+", default=list(MODELS),
                   help="encoders to measure, by the streaming benchmark's model names")
    args = p.parse_args()
    setup(args.threads, args.device)
    frames = nordland_frames("summer", max(BATCHES))
    print(f"{'model':28s} {'batch':>5s} {'runtime':12s} {'ms/frame':>9s} {'x eager':>8s} "
          f"{'max diff':>9s}")
    for name in args.only:
        for batch in BATCHES:
            ms, diff, compile_s = measure(MODELS[name], frames, batch, args.repeat,
                                          args.device)
            for runtime, value in ms.items():
                print(f"{name:28s} {batch:5d} {runtime:12s} {value:9.2f} "
                      f"{value / ms['eager']:8.2f} {diff[runtime]:9.1e}", flush=True)
            print(f"{'':34s} first calls (compiling, exporting): {compile_s:.0f} s")
    report_load()


if __name__ == "__main__":
    main()
