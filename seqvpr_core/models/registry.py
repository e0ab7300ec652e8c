"""Name -> factory registries for frame encoders and sequence aggregators.

Registration happens on import of :mod:`seqvpr_core.models`; the CLI takes its
``choices`` from here so a new model is reachable everywhere without edits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

ENCODERS: dict[str, Callable] = {}
AGGREGATORS: dict[str, Callable] = {}


def _register(table: dict[str, Callable], kind: str, name: str | None = None):
    def wrap(fn: F) -> F:
        key = name or fn.__name__
        if key in table:
            raise ValueError(f"{kind} {key!r} is registered twice")
        table[key] = fn
        return fn

    return wrap


def register_encoder(name: str | None = None):
    """Decorator: register a frame-encoder factory under ``name`` (default: its name)."""
    return _register(ENCODERS, "encoder", name)


def register_aggregator(name: str | None = None):
    """Decorator: register a sequence-aggregator factory under ``name``."""
    return _register(AGGREGATORS, "aggregator", name)


def _lookup(table: dict[str, Callable], kind: str, name: str) -> Callable:
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; known: {sorted(table)}") from None


def _create(table: dict[str, Callable], kind: str, name: str, kwargs: dict):
    """``table[name](**kwargs)``; an unknown option or a value of the wrong type is a
    ValueError naming the model part."""
    factory = _lookup(table, kind, name)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{kind} {name!r}: {exc}") from None


def create_encoder(name: str, **kwargs):
    """Build a registered frame encoder by name."""
    return _create(ENCODERS, "encoder", name, kwargs)


def create_aggregator(name: str, **kwargs):
    """Build a registered sequence aggregator by name."""
    return _create(AGGREGATORS, "aggregator", name, kwargs)


def list_encoders() -> list[str]:
    return sorted(ENCODERS)


def list_aggregators() -> list[str]:
    return sorted(AGGREGATORS)
