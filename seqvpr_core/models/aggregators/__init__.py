"""Sequence aggregators; importing this package registers them."""

from . import pooling, seqgem  # noqa: F401
