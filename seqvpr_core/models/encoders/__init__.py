"""Frame encoders; importing this package registers them."""

from . import efficientnet_lite, pixels  # noqa: F401
