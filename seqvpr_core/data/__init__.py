"""Data sources: image folders and rosbags, each a :class:`FrameSource` (ordered
frames + stamps + poses) that the streaming pipeline consumes."""

from .images import IMAGE_SUFFIXES, ImageDecodeError, read_image
from .ros_image import ImageEncodingError, compressed_to_rgb, raw_to_rgb
from .rosbag import BagError, BagFrames, read_bag
from .source import FrameSource
from .spacing import KeyframeSpacing, SpacingFilter
from .traversal import Traversal, concat_traversals, read_image_folder

__all__ = [
    "IMAGE_SUFFIXES", "BagError", "BagFrames", "FrameSource", "ImageDecodeError",
    "ImageEncodingError", "KeyframeSpacing", "SpacingFilter", "Traversal", "compressed_to_rgb",
    "concat_traversals", "raw_to_rgb", "read_bag", "read_image", "read_image_folder",
]
