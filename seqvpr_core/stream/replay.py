"""Drive a localizer over a whole traversal in encoder-sized batches."""

from __future__ import annotations

from collections.abc import Iterator

from tqdm import tqdm

from ..data import Traversal
from .localizer import StreamingLocalizer, WindowResult


def replay(localizer: StreamingLocalizer, traversal: Traversal, batch_size: int = 32,
           progress: bool = True, desc: str | None = None) -> Iterator[WindowResult]:
    """Stream ``traversal`` in order; yields every completed window's result."""
    with tqdm(total=len(traversal), desc=desc or f"{localizer.config.mode} {traversal.name}",
              unit="frame", disable=not progress) as bar:
        for start, frames in traversal.batches(batch_size):
            idx = range(start, start + len(frames))
            yield from localizer.feed(
                frames,
                stamps_ns=traversal.stamps_ns[start:start + len(frames)],
                poses=[traversal.pose(i) for i in idx],
                names=[traversal.paths[i].name for i in idx],
                indices=list(idx),
                source=traversal.name,
            )
            bar.update(len(frames))
