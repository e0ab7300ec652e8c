"""A bounded, thread-safe frame queue: the subscription callback only enqueues.

Under overload the OLDEST frame is dropped (a place recognizer wants the newest
view) and counted for /diagnostics; memory never grows past ``capacity`` items.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FrameQueue(Generic[T]):
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0  # frames discarded because the consumer fell behind
        self.received = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: T) -> bool:
        """Enqueue; returns False when an older frame had to be dropped for it."""
        with self._cond:
            self.received += 1
            dropped = len(self._items) >= self.capacity
            if dropped:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()
            return not dropped

    def get_batch(self, limit: int, timeout: float | None = None) -> list[T]:
        """Up to ``limit`` waiting items, oldest first: a worker that fell behind
        catches up with one batched encoder pass. Empty on timeout or after
        :meth:`close`."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return []
            return [self._items.popleft() for _ in range(min(limit, len(self._items)))]

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def close(self) -> None:
        """Wake every waiting consumer; further gets return None once empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
