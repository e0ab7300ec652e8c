"""Streaming vs recompute: cost per new frame, side by side in one run.

    python benchmarks/streaming.py [--threads 1] [--repeat 15]

Streaming (ours): a localizer step: encode the new frame once, push it into
the feature ring, aggregate the cached window, add it to a map. Recompute
(the published seq-VPR code): encode all L frames of the window and aggregate.
Target: streaming / recompute <= 1.3 / L, for EfficientNet-Lite0 + SeqGeM (at the
Nordland 64x128 input and at its native 224x224) and for SeqVLAD (CCT-224 tokens +
NetVLAD over all tokens of the window).

Queued (what the ROS node does when it fell behind): L frames that waited are
fed in one batch; printed per frame, next to the one-at-a-time step.

STformer and Adapt-STformer (``--only``) run with their authors' settings (CCT-384
at 384x384, 4 blocks; STformer 4 space-time blocks, L = 5 only, as the method
fixes it). Each frame is still encoded once, but their cross-frame parts (the
temporal branch, the recurrence) run once per window, so the target is out of
reach by construction; the ratio says how much of the window cost is per frame.
"""

from __future__ import annotations

import torch
from _common import LITE0_SEQGEM, interleaved_ms, nordland_frames, parser, report_load, setup

MODELS = {
    "lite0+seqgem 64x128 grid": LITE0_SEQGEM,  # the Nordland configuration
    "lite0+seqgem 224x224": {"encoder": {"name": "efficientnet_lite0"},  # native size
                             "aggregator": "seqgem"},
    "cct224+seqvlad": {"encoder": {"name": "cct224", "pretrained": False},  # no weights here
                       "aggregator": "seqvlad"},
    "cct384+stformer": {"encoder": {"name": "cct384", "pretrained": False, "layers": 4,
                                    "output": "tokens+patches"},
                        "aggregator": {"name": "stformer", "length": 5, "pretrained": False}},
    "cct384+adapt_stformer": {"encoder": {"name": "cct384", "pretrained": False, "layers": 4},
                              "aggregator": "adapt_stformer"},
}
DEFAULT = ["lite0+seqgem 64x128 grid", "lite0+seqgem 224x224", "cct224+seqvlad"]


def compare(config: dict, length: int, frames: list, repeat: int, device: str = "cpu",
            half: bool = False, runtime: str = "torch") -> dict[str, float]:
    from seqvpr_core.maps import PlaceMap
    from seqvpr_core.models import build_model
    from seqvpr_core.stream import LocalizerConfig, StreamingLocalizer, WindowConfig

    model = build_model(config, device=device, half=half, runtime=runtime)
    loc = StreamingLocalizer(model, PlaceMap(model.descriptor_dim),
                             LocalizerConfig("mapping", WindowConfig.fixed(length)))
    loc.feed(frames[:length], list(range(length)))  # the ring is full: steady state
    state = {"i": length}

    def stream() -> None:
        i = state["i"]
        loc.step(frames[i % len(frames)], i)
        state["i"] = i + 1

    def queued() -> None:
        i = state["i"]
        loc.feed([frames[(i + j) % len(frames)] for j in range(length)],
                 list(range(i, i + length)))
        state["i"] = i + length

    def recompute() -> None:
        i = state["i"]
        window = [frames[(i - length + j) % len(frames)] for j in range(length)]
        with torch.inference_mode():
            model.aggregate(model.encode_frames(window)[None]).cpu().numpy()

    ms = interleaved_ms({"stream": stream, "recompute": recompute, "queued": queued}, repeat)
    ms["queued"] /= length
    return ms


def main() -> None:
    p = parser(__doc__, device=True)
    p.add_argument("--repeat", type=int, default=15, help="timed steps of each kind")
    p.add_argument("--only", choices=list(MODELS), nargs="+", default=DEFAULT,
                   help=f"models to measure (default: {', '.join(DEFAULT)})")
    args = p.parse_args()
    setup(args.threads, args.device)
    frames = nordland_frames("summer", 64)
    print(f"{'model':28s} {'L':>3s} {'stream ms':>10s} {'recompute ms':>13s} "
          f"{'ratio':>7s} {'target 1.3/L':>13s} {'':6s} {'queued ms/frame':>15s}")
    for name in args.only:
        config = MODELS[name]
        fixed = isinstance(config["aggregator"], dict) and "length" in config["aggregator"]
        for length in (config["aggregator"]["length"],) if fixed else (5, 10):
            ms = compare(config, length, frames, args.repeat, args.device, args.half,
                         args.runtime)
            ratio = ms["stream"] / ms["recompute"]
            verdict = "ok" if ratio <= 1.3 / length else "MISSED"
            print(f"{name:28s} {length:3d} {ms['stream']:10.2f} {ms['recompute']:13.2f} "
                  f"{ratio:7.3f} {1.3 / length:13.3f} {verdict:6s} {ms['queued']:15.2f}",
                  flush=True)
    report_load()


if __name__ == "__main__":
    main()
