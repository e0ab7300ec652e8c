"""Training: triplet loss with cached hard-negative mining, the JIST image branch,
early stopping, exact resume and DDP, all in one loop driven by a YAML config."""

from .config import TrainConfig, config_from_dict, load_config
from .loop import Trainer, train

__all__ = ["TrainConfig", "Trainer", "config_from_dict", "load_config", "train"]
