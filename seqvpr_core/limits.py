"""Numbers where they enter: one rule per kind of value, one message everywhere.

A :class:`Limit` says what a number must be (an integer, or a finite real; its
bounds). The same limit checks a command-line option (``type=TOP_K.parse``: argparse
prints ``argument --top-k: must be an integer in 1..1000, got 5000`` and exits 2), a
ROS parameter (``top_k must be an integer in 1..1000, got 5000``), a config file key
and the core's own config dataclasses (``TOP_K.check("top_k", value)``), so a value
that is refused in one place is refused with the same words in every other.

NaN and infinities are never a valid number here: a NaN threshold would open the
loop-closure gate for every window, a NaN exclusion would fail every slam window.
"""

from __future__ import annotations

import argparse
import math
import numbers
from dataclasses import dataclass

MAX_TOP_K = 1000  # matches per window: a CSV row of 4000 columns is already unreadable
MAX_WINDOW = 1000  # frames per window: the ring holds this many frame features
MAX_THREADS = 1024
MAX_BATCH = 4096  # frames per encoder call
MAX_IMAGE_PIXELS = 8192 * 8192  # 67 MP: a 20000x20000 PNG would decode to 1.2 GB


@dataclass(frozen=True)
class Limit:
    """A number's kind and bounds. ``low_open``: ``low`` itself is refused."""

    integer: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    minus_inf: str = ""  # what -inf means when it is allowed ("none": no threshold)

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.minus_inf:
            kind += f" (or -inf: {self.minus_inf})"
        low, high = _text(self.low), _text(self.high)
        if self.low is not None and self.high is not None and not self.low_open:
            return f"{kind} in {low}..{high}"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {low}")
        if self.high is not None:
            parts.append(f"<= {high}")
        return " ".join([kind, " and ".join(parts)]).strip()

    def problem(self, value: object) -> str | None:
        """What is wrong with ``value`` (``"must be ..., got ..."``), or None."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            ok = False
        elif self.minus_inf and value == -math.inf:
            return None
        elif self.integer:
            ok = isinstance(value, numbers.Integral)
        else:
            ok = math.isfinite(value)
        if ok and self.low is not None:
            ok = value > self.low if self.low_open else value >= self.low
        if ok and self.high is not None:
            ok = value <= self.high
        return None if ok else f"must be {self.describe()}, got {value!r}"

    def check(self, name: str, value):
        """``value`` if it is valid, else ValueError ``"<name> must be ..., got ..."``."""
        problem = self.problem(value)
        if problem:
            raise ValueError(f"{name} {problem}")
        return value

    def parse(self, text: str):
        """An argparse ``type``: the option's text as a valid number."""
        try:
            value = int(text) if self.integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}") \
                from None
        problem = self.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    def parse_list(self, text: str) -> list:
        """An argparse ``type`` for comma-separated values (``--sweep 5,10,20``)."""
        values = [self.parse(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"give comma-separated values, each "
                                             f"{self.describe()}")
        return values


def _text(bound: float | None) -> str:
    if bound is None:
        return ""
    return str(int(bound)) if float(bound).is_integer() else str(bound)


# --- the kinds of numbers seqvpr takes -------------------------------------------------
TOP_K = Limit(integer=True, low=1, high=MAX_TOP_K)
WINDOW_LENGTH = Limit(integer=True, low=1, high=MAX_WINDOW)
STRIDE = Limit(integer=True, low=1)
COUNT = Limit(integer=True, low=1)  # consistency, queue sizes, epochs, patience, ...
NON_NEGATIVE_COUNT = Limit(integer=True, low=0)  # frame tolerances, keyframes to skip
THREADS = Limit(integer=True, low=1, high=MAX_THREADS)
BATCH = Limit(integer=True, low=1, high=MAX_BATCH)
DIMENSION = Limit(integer=True, low=1)
SECONDS = Limit(low=0)  # durations: exclusion window, keyframe interval, sync slop
METRES = Limit(low=0)  # distances: keyframe spacing, ground-truth radius
POSITIVE = Limit(low=0, low_open=True)  # learning rates, periods, scales
NON_NEGATIVE = Limit(low=0)
THRESHOLD = Limit(minus_inf="none")  # a minimum score; -inf lets every score through
DEGREES = Limit(low=0, high=180)  # a heading difference
PERIOD_S = Limit(low=0, high=3600, low_open=True)  # diagnostics and timers
