"""Shared benchmark plumbing: thread counts, machine load, Nordland descriptors.

Every benchmark pins torch and FAISS threads (OpenMP on a CPU shared with other
jobs can be 10-100x slower with too many threads), prints them with the load
average, and measures its ratio side by side in one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NORDLAND = ROOT.parent / "shared" / "data" / "nordland64"
CACHE = Path(os.environ.get("SEQVPR_BENCH_CACHE", Path.home() / ".cache" / "seqvpr-bench"))

# EfficientNet-Lite0 (ImageNet) stage 5 on a 2x4 grid: the Nordland-tuned encoder.
LITE0 = {"name": "efficientnet_lite0", "stage": 5, "pool_grid": (2, 4), "image_size": (64, 128)}
LITE0_SEQGEM = {"encoder": LITE0, "aggregator": "seqgem"}


def parser(doc: str | None, device: bool = False) -> argparse.ArgumentParser:
    """Common options; ``device`` adds --device/--half/--runtime for scripts that time
    a model."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=1,
                   help="torch and FAISS threads (1 gives steady numbers on a shared CPU)")
    if device:
        p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"),
                       help="where the model runs (auto: CUDA when present); absolute times "
                            "mean something only on a GPU, ratios anywhere")
        p.add_argument("--half", action="store_true", help="float16 model (CUDA only)")
        p.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime"),
                       help="encoder inference runtime (onnxruntime: CPU; CNN and CCT encoders)")
    return p


def sync(device) -> None:
    """Wait for queued GPU work, so a timer measures the work and not its launch."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def setup(threads: int, device: str | None = None) -> None:
    """Pin threads and print what the numbers were measured under."""
    import faiss
    import torch

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    print(f"threads: torch {torch.get_num_threads()}, faiss {faiss.omp_get_max_threads()}; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    if device is not None:
        from seqvpr_core.models import resolve_device

        d = resolve_device(device)
        name = torch.cuda.get_device_name(d) if d.type == "cuda" else "CPU"
        print(f"device: {d} ({name})")


def report_load() -> None:
    load = os.getloadavg()[0]
    note = " (busy machine: rerun before trusting absolute times)" \
        if load > (os.cpu_count() or 1) else ""
    print(f"load average at the end: {load:.2f}{note}")


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def interleaved_ms(fns: dict[str, Callable[[], object]], repeat: int,
                   warmup: int = 2) -> dict[str, float]:
    """Median ms of each function, alternating them so load spikes hit all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def nordland_frames(season: str, count: int | None = None) -> list[np.ndarray]:
    from seqvpr_core.data import read_image

    paths = sorted((NORDLAND / season).glob("images-*.png"))[:count]
    if not paths:
        raise FileNotFoundError(f"no Nordland frames in {NORDLAND / season}")
    return [read_image(p) for p in paths]


def cached(name: str, make: Callable[[], np.ndarray]) -> np.ndarray:
    """An array computed once and kept in $SEQVPR_BENCH_CACHE (encoding is slow on a CPU)."""
    path = CACHE / f"{name}.npy"
    if path.is_file():
        return np.load(path)
    print(f"computing {name} (cached in {path})", flush=True)
    value = make()
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, value)
    os.replace(tmp, path)
    return value


def encode_season(model, season: str, batch: int = 64) -> np.ndarray:
    """Frame features of a whole Nordland season, float32 [2400, D]."""
    import torch

    frames = nordland_frames(season)
    out = [model.encode_frames(frames[i:i + batch]) for i in range(0, len(frames), batch)]
    return torch.cat(out).float().cpu().numpy()


def window_descriptors(model, features: np.ndarray, length: int) -> np.ndarray:
    """Descriptors of every window (stride 1) through the localizer's own path."""
    import torch

    from seqvpr_core.maps import PlaceMap
    from seqvpr_core.stream import FrameInfo, LocalizerConfig, StreamingLocalizer, WindowConfig

    place_map = PlaceMap(model.descriptor_dim)
    loc = StreamingLocalizer(model, place_map, LocalizerConfig("mapping",
                                                               WindowConfig.fixed(length)))
    infos = [FrameInfo(i, i) for i in range(len(features))]
    results = loc.push_features(torch.from_numpy(features), infos)
    return np.stack([r.descriptor for r in results])


def positives(n_query: int, n_db: int, length: int, tolerance: int = 1) -> list[np.ndarray]:
    """Nordland positives of stride-1 windows (frame-aligned seasons) under the seeds'
    seq2seq rule, the one the index, PCA and on-time benchmarks report."""
    from seqvpr_core.eval import GroundTruth, window_positives

    spans = np.stack([np.arange(n_query), np.arange(n_query) + length - 1], axis=1)
    db = np.stack([np.arange(n_db), np.arange(n_db) + length - 1], axis=1)
    gt = GroundTruth(tolerance=tolerance, rule="seq2seq")
    return window_positives(spans, db, n_db + length - 1, gt)
