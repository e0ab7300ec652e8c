"""Place maps: a FAISS index of sequence descriptors plus one keyframe row per entry."""

from .keyframes import Keyframe, KeyframeTable
from .place_map import MapFormatError, Match, PlaceMap

__all__ = ["Keyframe", "KeyframeTable", "MapFormatError", "Match", "PlaceMap"]
