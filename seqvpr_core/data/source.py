"""What the pipeline needs from any recording: image folders and rosbags alike."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class FrameSource(Protocol):
    """An ordered stream of frames with stamps and, when known, poses.

    ``batches`` decodes lazily, in order: a long recording never sits in memory.
    """

    name: str
    stamps_ns: np.ndarray  # int64 [N]

    def __len__(self) -> int: ...

    @property
    def names(self) -> list[str]: ...

    def pose(self, i: int) -> tuple[float, float, float] | None: ...

    def batches(self, batch_size: int) -> Iterator[tuple[int, list[np.ndarray]]]: ...
