"""Sequence aggregators; importing this package registers them."""

from . import adapt_stformer, fusion, mixer, netvlad, pooling, seqgem, stformer  # noqa: F401
