"""Sequence aggregators; importing this package registers them."""

from . import (  # noqa: F401
    adapt_stformer,
    delta,
    fusion,
    mixer,
    netvlad,
    pooling,
    r2plus1d,
    seqgem,
    stformer,
    timesformer,
)
