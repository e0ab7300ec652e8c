"""The streaming path: feature ring -> windows -> aggregation -> map -> gate.

Names are imported on first use, so reading the gate's defaults (the ROS launch
files do, through ``seqvpr_ros.params``; ``seqvpr localize --help``) does not load
torch.
"""

from importlib import import_module

_EXPORTS = {
    "GateConfig": "gate", "LoopClosure": "gate", "LoopClosureGate": "gate",
    "MODES": "localizer", "FrameInfo": "localizer", "LocalizerConfig": "localizer",
    "StreamingLocalizer": "localizer", "StreamStats": "localizer", "WindowConfig": "window",
    "WindowResult": "localizer", "check_window": "window",
    "replay": "replay", "FeatureRing": "ring",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # also over the submodule of the same name (replay)
    return value
