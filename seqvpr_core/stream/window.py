"""The windows a stream cuts (length, growth at the start, stride) and which of them
a model can aggregate. Apart from the localizer, so reading them loads no torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..limits import STRIDE, WINDOW_LENGTH

if TYPE_CHECKING:
    from ..models import SequenceModel


@dataclass(frozen=True)
class WindowConfig:
    """Windows of ``min_len..max_len`` frames, one every ``stride`` new frames.

    A stream's first windows grow from ``min_len`` to ``max_len`` frames; after
    that every window has ``max_len``.
    """

    min_len: int = 5
    max_len: int = 5
    stride: int = 1

    def __post_init__(self) -> None:
        WINDOW_LENGTH.check("window min_len", self.min_len)
        WINDOW_LENGTH.check("window max_len", self.max_len)
        STRIDE.check("window stride", self.stride)
        if self.min_len > self.max_len:
            raise ValueError(f"need min_len <= max_len, got {self.min_len}..{self.max_len}")

    @classmethod
    def fixed(cls, length: int, stride: int = 1) -> WindowConfig:
        return cls(length, length, stride)

    @classmethod
    def override(cls, recorded: dict, max_len: int | None = None, min_len: int | None = None,
                 stride: int | None = None) -> WindowConfig:
        """The windows a map records (``min_len``, ``max_len``, ``stride``) with each given
        value in place of the recorded one (the CLI's options, the node's parameters; a
        new ``max_len`` alone makes windows of that fixed length)."""
        length = max_len or recorded.get("max_len")
        if not length:
            raise ValueError("no window length: the map records none and none was given")
        first = min_len or (length if max_len else recorded.get("min_len")) or length
        return cls(first, length, stride or recorded.get("stride") or 1)

    def length_at(self, frames_seen: int) -> int | None:
        """Window length that ends at the ``frames_seen``-th frame, or None."""
        if frames_seen < self.min_len or (frames_seen - self.min_len) % self.stride:
            return None
        return min(frames_seen, self.max_len)


def check_window(model: SequenceModel, window: WindowConfig) -> None:
    """Refuse windows the model cannot aggregate: a fixed-length model (cat, fc,
    mixer) takes one length, some (seqnet) a shortest one."""
    lo, hi = window.min_len, window.max_len
    if not model.variable_length and not (lo == hi == model.fixed_length):
        raise ValueError(
            f"model {model.name} needs windows of exactly {model.fixed_length} frames, "
            f"but the window is {lo}..{hi}; set both to "
            f"{model.fixed_length} or use a variable-length aggregator")
    if lo < model.min_length:
        raise ValueError(f"model {model.name} needs windows of at least {model.min_length} "
                         f"frames, but the shortest window is {lo}; raise it "
                         "(--min-len, the node's window_min)")
