"""Drive a localizer over a whole recording (image folder or rosbag) in encoder-sized batches."""

from __future__ import annotations

from collections.abc import Iterator

from tqdm import tqdm

from ..data import FrameSource
from .localizer import StreamingLocalizer, WindowResult


def replay(localizer: StreamingLocalizer, source: FrameSource, batch_size: int = 32,
           progress: bool = True, desc: str | None = None) -> Iterator[WindowResult]:
    """Stream ``source`` in order; yields every completed window's result."""
    names = source.names
    with tqdm(total=len(source), desc=desc or f"{localizer.config.mode} {source.name}",
              unit="frame", disable=not progress) as bar:
        for start, frames in source.batches(batch_size):
            idx = range(start, start + len(frames))
            yield from localizer.feed(
                frames,
                stamps_ns=source.stamps_ns[start:start + len(frames)],
                poses=[source.pose(i) for i in idx],
                names=[names[i] for i in idx],
                indices=list(idx),
                source=source.name,
            )
            bar.update(len(frames))
