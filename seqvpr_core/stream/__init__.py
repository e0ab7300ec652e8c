"""The streaming path: feature ring -> windows -> aggregation -> map -> gate."""

from .gate import GateConfig, LoopClosure, LoopClosureGate
from .localizer import (
    MODES,
    FrameInfo,
    LocalizerConfig,
    StreamingLocalizer,
    StreamStats,
    WindowConfig,
    WindowResult,
    check_window,
)
from .replay import replay
from .ring import FeatureRing

__all__ = [
    "MODES", "FeatureRing", "FrameInfo", "GateConfig", "LocalizerConfig", "LoopClosure",
    "LoopClosureGate", "StreamStats", "StreamingLocalizer", "WindowConfig", "WindowResult",
    "check_window", "replay",
]
