"""Frame encoders; importing this package registers them."""

from . import cct, cnn, dinov2, efficientnet_lite, pixels, rgb, vit  # noqa: F401
