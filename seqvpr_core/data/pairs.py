"""Database/query pairs of traversals per split, and the registry of dataset readers.

Every reader turns a dataset's on-disk layout into ``{split: [TraversalPair]}``
(splits ``train``, ``val``, ``test``, as the seq-VPR papers divide them). Training,
validation and ``seqvpr eval`` consume that one shape, whatever the source.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .traversal import Traversal

SPLITS = ("train", "val", "test")


@dataclass
class TraversalPair:
    """A map (database) traversal and a query traversal of the same places."""

    name: str
    db: Traversal
    query: Traversal

    @property
    def has_positions(self) -> bool:
        return self.db.positions is not None and self.query.positions is not None


class LazySplits(Mapping[str, list[TraversalPair]]):
    """``{split: [TraversalPair]}`` whose splits are read on first access, so that
    evaluating one split of a large dataset (MSLS: 24 cities) reads only that split."""

    def __init__(self, loaders: dict[str, Callable[[], list[TraversalPair]]]) -> None:
        self._loaders = dict(loaders)
        self._read: dict[str, list[TraversalPair]] = {}

    def __getitem__(self, split: str) -> list[TraversalPair]:
        if split not in self._read:
            self._read[split] = self._loaders[split]()
        return self._read[split]

    def __contains__(self, split: object) -> bool:  # without reading the split
        return split in self._loaders

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)


Reader = Callable[..., Mapping[str, list[TraversalPair]]]
DATASETS: dict[str, Reader] = {}


def register_dataset(name: str):
    """Decorator: register a reader ``fn(root, **options) -> {split: [TraversalPair]}``."""
    def wrap(fn: Reader) -> Reader:
        if name in DATASETS:
            raise ValueError(f"dataset reader {name!r} is registered twice")
        DATASETS[name] = fn
        return fn
    return wrap


def known_datasets() -> list[str]:
    """Names of the registered dataset readers."""
    from . import readers  # noqa: F401  (registration on import)

    return sorted(DATASETS)


def check_options(reader: str, options: dict) -> None:
    """ValueError naming an option the reader does not take."""
    fn = DATASETS[reader]
    try:
        inspect.signature(fn).bind(None, **options)
    except TypeError as exc:
        known = list(inspect.signature(fn).parameters)[1:]
        raise ValueError(f"dataset reader {reader!r}: {exc}; its options: {known}") from None


def read_dataset(reader: str, root: str | Path, **options
                 ) -> Mapping[str, list[TraversalPair]]:
    """Read a dataset by reader name; unknown names list the known ones. Some readers
    (MSLS, nuScenes) read a split only when it is first looked up."""
    from . import readers  # noqa: F401  (registration on import)

    if reader not in DATASETS:
        raise ValueError(f"unknown dataset reader {reader!r}; known: {sorted(DATASETS)}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist")
    check_options(reader, options)
    try:
        return DATASETS[reader](root, **options)
    except (TypeError, AttributeError) as exc:  # an option of the wrong shape
        raise ValueError(f"dataset reader {reader!r}: an option has the wrong shape "
                         f"({exc}); options given: {options}") from None


def layout_error(root: Path, what: str, expected: str) -> ValueError:
    """The error every reader raises on a wrong layout: what is missing, what was expected."""
    return ValueError(f"{root} is not in the expected layout: {what}; expected {expected}")
