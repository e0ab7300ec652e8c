"""A fixed-capacity ring of the newest frame features, kept on the model's device."""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import torch

T = TypeVar("T")


class FeatureRing(Generic[T]):
    """The last ``capacity`` frame features (each of ``shape``: [D] for a global
    vector, [N, C] for tokens) with one metadata object each.

    Memory is allocated once; pushing never grows it, so a robot running for
    days holds exactly ``capacity`` features.
    """

    def __init__(self, capacity: int, shape: tuple[int, ...], device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        if capacity < 1:
            raise ValueError(f"ring capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._buf = torch.zeros(capacity, *shape, device=device, dtype=dtype)
        self._meta: deque[T] = deque(maxlen=capacity)
        self._next = 0  # slot the next push writes

    def __len__(self) -> int:
        return len(self._meta)

    def clear(self) -> None:
        self._meta.clear()
        self._next = 0

    def push(self, feature: torch.Tensor, meta: T) -> None:
        self._buf[self._next] = feature
        self._meta.append(meta)
        self._next = (self._next + 1) % self.capacity

    def last(self, n: int) -> tuple[torch.Tensor, list[T]]:
        """The newest ``n`` features, oldest first: ([n, *shape], their metadata)."""
        if not 1 <= n <= len(self):
            raise ValueError(f"ring holds {len(self)} frames, cannot take {n}")
        slots = (torch.arange(self._next - n, self._next, device=self._buf.device)
                 % self.capacity)
        return self._buf.index_select(0, slots), list(self._meta)[-n:]
