"""A sequence model = frame encoder + sequence aggregator, built from a config.

The config is a small dict, ``{"encoder": {"name": ..., **kw}, "aggregator":
{"name": ..., **kw}}``, saved inside every checkpoint so ``load_model(path)``
needs nothing else. Checkpoints are loaded with ``weights_only=True``: no
pickled code ever runs.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..inputs import InputError, fields, read_torch
from ..outputs import MODEL
from .base import Aggregator, FrameEncoder, FrameHead, check_compatible
from .pca import PCAWhitening
from .registry import AGGREGATORS, create_aggregator, create_encoder

CHECKPOINT_FORMAT = "seqvpr-model"
CHECKPOINT_VERSION = 1


class SequenceModel(nn.Module):
    """Encode frames once, aggregate any window of cached frame features.

    Frame features are the encoder's output, passed through the optional
    per-frame ``head`` (config ``head: {dim: N}``); the ring caches them.

    - ``encode_frames``: uint8 RGB frames [B, H, W, 3] -> features [B, *frame_shape]
    - ``aggregate``: features [B, T, *frame_shape] -> descriptors [B, descriptor_dim]
    - ``forward``: preprocessed clips [B, T, 3, H, W] -> descriptors (training)
    """

    def __init__(self, config: dict[str, Any], *, pretrained: bool = True,
                 encoder: FrameEncoder | None = None, head: FrameHead | None = None) -> None:
        super().__init__()
        self.config = _normalise_config(config)
        enc_kw = {k: v for k, v in self.config["encoder"].items() if k != "name"}
        agg_kw = {k: v for k, v in self.config["aggregator"].items() if k != "name"}
        enc_kw.setdefault("pretrained", pretrained)
        if encoder is None:
            encoder = create_encoder(self.config["encoder"]["name"], **enc_kw)
        self.encoder: FrameEncoder = encoder
        if head is None and "head" in self.config:
            head = FrameHead(self.encoder.dim, **self.config["head"])
        self.head: FrameHead | None = head
        agg_name = self.config["aggregator"]["name"]
        agg_kw.update(_encoder_facts(agg_name, self.encoder, self.frame_dim))
        factory = AGGREGATORS.get(agg_name)
        if factory is not None and "pretrained" in inspect.signature(factory).parameters:
            agg_kw.setdefault("pretrained", pretrained)  # its own weights file (r2plus1d, stformer)
        self.aggregator: Aggregator = create_aggregator(agg_name, **agg_kw)
        check_compatible(self.encoder, self.aggregator, self.config["encoder"]["name"], agg_name)
        self.pca: PCAWhitening | None = None
        if "pca" in self.config:
            self.pca = PCAWhitening(self.aggregator.out_dim(self.frame_dim),
                                    **self.config["pca"])

    def with_aggregator(self, aggregator: dict[str, Any] | str) -> SequenceModel:
        """Another model sharing this one's encoder and head (no copy, no reload)."""
        config = {"encoder": self.config["encoder"], "aggregator": aggregator}  # no PCA
        if self.head is not None:
            config["head"] = self.config["head"]
        return SequenceModel(config, encoder=self.encoder,
                             head=self.head).to(self.device).eval()

    @property
    def name(self) -> str:
        return f"{self.config['encoder']['name']}+{self.config['aggregator']['name']}"

    @property
    def frame_dim(self) -> int:
        return self.head.dim if self.head is not None else self.encoder.dim

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one frame's cached features: (D,) or (N, C) for token encoders."""
        return (*self.encoder.out_shape[:-1], self.frame_dim)

    @property
    def descriptor_dim(self) -> int:
        if self.pca is not None:
            return self.pca.dim
        return self.aggregator.out_dim(self.frame_dim)

    @property
    def metric(self) -> str:
        """How maps search its descriptors: ``ip`` for unit vectors (inner product,
        the cosine), ``l2`` for the raw vectors some authors search with L2 distance
        (``normalize: false`` aggregators; a PCA stage normalises again)."""
        return "ip" if self.pca is not None or self.aggregator.normalize else "l2"

    @property
    def variable_length(self) -> bool:
        return self.aggregator.variable_length

    @property
    def fixed_length(self) -> int | None:
        return self.aggregator.length

    @property
    def min_length(self) -> int:
        """The shortest window the aggregator takes."""
        return self.aggregator.length or self.aggregator.min_length

    @property
    def device(self) -> torch.device:
        return self._placement()[0]

    @property
    def dtype(self) -> torch.dtype:
        return self._placement()[1]

    def _placement(self) -> tuple[torch.device, torch.dtype]:
        """Where the weights live and their float type, asked for every frame: kept
        until ``.to()``/``.half()``/``.cuda()`` (all go through ``_apply``)."""
        cached = self.__dict__.get("_placement_cache")
        if cached is None:
            tensors = [*self.parameters(), *self.buffers()]
            device = tensors[0].device if tensors else torch.device("cpu")
            dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
            cached = self.__dict__["_placement_cache"] = (device, dtype)
        return cached

    def _apply(self, fn, *args, **kwargs):
        self.__dict__.pop("_placement_cache", None)
        return super()._apply(fn, *args, **kwargs)

    def preprocess(self, frames: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 RGB [B, H, W, 3] (or a list of HxWx3) -> encoder input on the model's device."""
        if isinstance(frames, (list, tuple)):
            shapes = {f.shape for f in frames}
            if len(shapes) > 1:  # mixed sizes: resize each, then stack
                return torch.cat([self.preprocess(f[None]) for f in frames])
            frames = np.stack(frames)
        if isinstance(frames, np.ndarray):  # a negative-stride view (bgr[..., ::-1]) too
            frames = np.ascontiguousarray(frames)
        x = torch.as_tensor(frames).to(self.device, non_blocking=True)
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 RGB [B, H, W, 3], got {x.dtype} "
                             f"{tuple(x.shape)}")
        return self.encoder.preprocess(x).to(self.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed images [B, 3, H, W] -> frame features [B, *frame_shape]."""
        return self.apply_head(self.encoder.infer(x))

    def apply_head(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder output [..., encoder.dim] -> frame features [..., frame_dim]."""
        return features if self.head is None else self.head(features)

    def encode_frames(self, frames) -> torch.Tensor:
        """Raw uint8 RGB frames -> frame features [B, *frame_shape] (no autograd)."""
        return self._encode_raw(frames, self.encode)

    def encode_backbone_frames(self, frames) -> torch.Tensor:
        """Raw frames -> encoder output before the head: what a frozen-encoder
        training run caches, since the head itself is trained."""
        return self._encode_raw(frames, self.encoder.infer)

    def _encode_raw(self, frames, encode) -> torch.Tensor:
        """``encode`` on preprocessed frames, in calls of at most
        :meth:`frames_per_call` frames."""
        if len(frames) == 0:
            return torch.empty(0, *self.frame_shape, device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            step = self.frames_per_call()
            if step is None or len(frames) <= step:
                return encode(self.preprocess(frames))
            return torch.cat([encode(self.preprocess(frames[i:i + step]))
                              for i in range(0, len(frames), step)])

    def frames_per_call(self) -> int | None:
        """Most frames one encoder call takes (None: any number): the encoder's
        ``cpu_batch_pixels`` budget when it runs eagerly on the CPU."""
        budget = self.encoder.cpu_batch_pixels
        if budget is None or self.encoder.runtime is not None or self.device.type != "cpu":
            return None
        height, width = self.encoder.preprocess.size
        return max(1, budget // (height * width))

    def warm_up(self) -> None:
        """Encode one blank frame, so that what a first frame pays once (an ONNX
        export, CUDA start-up) is paid before a stream starts, not on its first frame."""
        x = torch.zeros(1, 3, *self.encoder.preprocess.size, device=self.device,
                        dtype=self.dtype)
        with torch.inference_mode():
            self.encode(x)

    def aggregate(self, features: torch.Tensor) -> torch.Tensor:
        """Frame features [B, T, *frame_shape] -> [B, descriptor_dim] (unit vectors
        unless :attr:`metric` is ``l2``)."""
        descriptors = self.aggregator(features)
        return descriptors if self.pca is None else self.pca(descriptors)

    def aggregate_raw(self, features: torch.Tensor) -> torch.Tensor:
        """The aggregator's output before the optional PCA stage (to fit it)."""
        return self.aggregator(features)

    def fit_pca(self, descriptors: torch.Tensor) -> None:
        """Learn the configured PCA/whitening from raw descriptors [N, D]."""
        if self.pca is None:
            raise ValueError("this model has no PCA stage; add pca: {dim: ...} to its config")
        self.pca.fit(descriptors)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        feats = self.encode(clips.flatten(0, 1))
        return self.aggregate(feats.unflatten(0, (b, t)))

    def fingerprint(self) -> str:
        """sha256 of the config and every tensor: ties maps to the exact model.

        Cached until a tensor changes in place or moves (versions, data pointers):
        every map and localizer asks, and hashing a ViT-B takes about a second."""
        state = sorted(self.state_dict().items())
        config = json.dumps(self.config, sort_keys=True)
        key = (config, tuple((k, t.data_ptr(), t._version) for k, t in state))
        cached = self.__dict__.get("_fingerprint")
        if cached is not None and cached[0] == key:
            return cached[1]
        h = hashlib.sha256(config.encode())
        for name, tensor in state:
            h.update(name.encode())
            h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        self.__dict__["_fingerprint"] = (key, h.hexdigest())
        return h.hexdigest()

    def save(self, path: str | os.PathLike) -> None:
        """One self-describing checkpoint file, written atomically; it replaces only a
        seqvpr model checkpoint."""
        payload = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": self.config,
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }
        with atomic_path(path, MODEL) as tmp:
            torch.save(payload, tmp)


def _normalise_config(config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(dict(config))
    for part in ("encoder", "aggregator"):
        value = config.get(part)
        if isinstance(value, str):
            config[part] = {"name": value}
        elif not isinstance(value, dict) or "name" not in value:
            raise ValueError(f"model config needs {part}: {{name: ..., ...}}, got {value!r}")
    for key, value in config["encoder"].items():
        if isinstance(value, list):
            config["encoder"][key] = tuple(value)
    for key, value in config["aggregator"].items():
        if isinstance(value, list):
            config["aggregator"][key] = tuple(value)
    unknown = set(config) - {"encoder", "aggregator", "head", "pca"}
    if unknown:
        raise ValueError(f"unknown model config keys {sorted(unknown)}; "
                         "expected 'encoder', 'aggregator' and optionally 'head', 'pca'")
    head = config.get("head")
    if head is not None and (not isinstance(head, dict) or set(head) != {"dim"}):
        raise ValueError(f"head must be {{dim: int}}, got {head!r}")
    pca = config.get("pca")
    if pca is not None and (not isinstance(pca, dict) or "dim" not in pca
                            or set(pca) - {"dim", "whiten"}):
        raise ValueError(f"pca must be {{dim: int, whiten: bool}}, got {pca!r}")
    return config


def _encoder_facts(aggregator: str, encoder: FrameEncoder, in_dim: int) -> dict[str, Any]:
    """What the aggregator factory asks about the encoder's output (``in_dim``,
    ``grid``, ``prefix_tokens``): always derived from the encoder, never from the config."""
    if aggregator not in AGGREGATORS:
        return {}
    params = inspect.signature(AGGREGATORS[aggregator]).parameters
    if "grid" in params and encoder.grid is None:
        raise ValueError(
            f"aggregator {aggregator!r} needs a grid of tokens per frame, but the encoder gives "
            f"one {encoder.dim}-d vector; use a token encoder (cct224, cct384, dinov2_vits14, "
            "dinov2_vitb14, or resnet*/vgg16 with pool='none')")
    facts = {"in_dim": in_dim, "grid": encoder.grid, "prefix_tokens": encoder.prefix_tokens}
    return {k: v for k, v in facts.items() if k in params}


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> SequenceModel:
    """Rebuild a model from its checkpoint alone (no pickled code executed); a
    truncated, foreign or mismatched file is an error naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model checkpoint {path} does not exist")
    payload = read_torch(path, "model checkpoint", map_location)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a seqvpr model checkpoint (no '{CHECKPOINT_FORMAT}' "
                         "format tag)")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise InputError(f"{path} has checkpoint version {payload.get('version')}; this "
                         f"seqvpr reads version {CHECKPOINT_VERSION}")
    fields(payload, str(path), {"format": str, "version": int, "config": dict,
                                "state_dict": dict})
    try:
        model = SequenceModel(payload["config"], pretrained=False)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: its model config cannot be built: {exc}") from None
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"{path}: its weights do not fit its config ({first})") from None
    return model.to(map_location).eval()
