"""Data sources: each becomes a :class:`Traversal` (ordered frames + stamps + poses)."""

from .images import IMAGE_SUFFIXES, ImageDecodeError, read_image
from .traversal import Traversal, read_image_folder

__all__ = ["IMAGE_SUFFIXES", "ImageDecodeError", "Traversal", "read_image", "read_image_folder"]
