"""The one training loop: triplet loss with cached hard-negative mining, optional
JIST image branch, validation Recall@K with early stopping, exact resume, DDP.

The untrained start is validated as epoch 0 and competes for ``best.pt``: a run
whose training never beats it on the held-out stretch says so (best epoch 0)
instead of shipping a worse model.

Driven entirely by :class:`TrainConfig`; ``seqvpr train`` is a thin wrapper.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..data.pairs import read_dataset
from ..inputs import InputError
from ..models import SequenceModel
from ..outputs import TRAIN_STATE, TRAINING_DIR, OutputError, claim
from . import checkpoint as ckpt
from . import dist
from .config import TrainConfig
from .features import cached_features
from .jist import ImageGroup, build_groups
from .losses import CosFace, triplet_loss
from .mining import MinedCache, Query
from .samples import PairWindows, WindowInputs, build_pair_windows
from .validate import validate
from .warm_start import init_aggregator, init_head

LOG = logging.getLogger(__name__)


class _Net(nn.Module):
    """Everything trained, behind one forward so DDP syncs both branches' gradients."""

    def __init__(self, model: SequenceModel, classifiers: nn.ModuleList, frozen: bool) -> None:
        super().__init__()
        self.model, self.classifiers, self.frozen = model, classifiers, frozen

    def forward(self, windows: torch.Tensor, images: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, group: int = 0):
        # frozen: inputs are cached encoder outputs; the head and aggregator train
        seq = self.model.aggregate(self.model.apply_head(windows)) if self.frozen \
            else self.model(windows)
        if images is None:
            return seq, None
        feats = self.model.apply_head(images) if self.frozen else self.model.encode(images)
        return seq, self.classifiers[group](feats.flatten(1), labels)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False,
                 after_epoch: Callable[[int], None] | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        """``echo`` receives one line per validated epoch (the CLI prints them)."""
        self.cfg, self.after_epoch, self.echo = cfg, after_epoch, echo
        self.info = dist.setup(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        # --resume reads last.ckpt first: a damaged one is named as such, not as a file
        # the output rule would refuse to replace
        state = ckpt.load_state(cfg.output_dir / ckpt.LAST) if resume else None
        self.out = claim(cfg.output_dir, TRAINING_DIR, "training output")
        if state is None and (self.out / ckpt.LAST).exists():
            raise OutputError(f"training output {self.out} holds a run ({ckpt.LAST}); "
                              "continue it with --resume, or start over in another output "
                              "folder (or delete this one)")
        if state is not None and state["config"].get("model") != _plain(cfg.model):
            raise InputError(f"{self.out / ckpt.LAST} was trained with model "
                             f"{state['config'].get('model')}, the config now gives "
                             f"{_plain(cfg.model)}: resume with the config it started with")
        self.out.mkdir(parents=True, exist_ok=True)
        if "pca" in cfg.model:
            raise ValueError("train the model without pca; fit PCA on the trained descriptors")
        self.model = SequenceModel(cfg.model).to(self.info.device)
        if cfg.frozen_encoder:
            self.model.encoder.requires_grad_(False)
        splits = read_dataset(cfg.data.reader, cfg.data.root, **cfg.data.options)
        for name in (cfg.data.train_split, cfg.data.val_split):
            if name not in splits:
                raise ValueError(f"dataset has no split {name!r}; it has {sorted(splits)}")
        self.train_pairs, self.val_pairs = splits[cfg.data.train_split], splits[cfg.data.val_split]
        self.features, self.augmented = self._features() if cfg.frozen_encoder \
            else (None, None)
        self.data: list[PairWindows] = [build_pair_windows(p, cfg.window, cfg.ground_truth)
                                        for p in self.train_pairs]
        self.queries: list[Query] = [(p, q) for p, pw in enumerate(self.data)
                                     for q in range(len(pw.q_windows)) if len(pw.positives[q])]
        if not self.queries:
            raise ValueError("no training query window has a positive; check the ground truth")
        self.inputs = [WindowInputs(self.model, None if self.features is None
                                    else self.features[i], p, cfg.augment,
                                    None if self.augmented is None else self.augmented[i])
                       for i, p in enumerate(self.train_pairs)]
        first = None if self.features is None else self.features[0]
        init_head(self.model, cfg.head_init, self.train_pairs[0], first, cfg.seed)
        init_aggregator(self.model, self.train_pairs[0], first, cfg.seed, self.info.device)
        self.groups: list[ImageGroup] = build_groups(self.train_pairs, cfg.jist) \
            if cfg.jist.enabled else []
        classifiers = nn.ModuleList(CosFace(self.model.frame_dim, g.classes, cfg.jist.scale,
                                            cfg.jist.margin) for g in self.groups)
        self.net = _Net(self.model, classifiers, cfg.frozen_encoder).to(self.info.device)
        self.ddp = self.net
        if self.info.enabled:
            dev = [self.info.device] if self.info.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.net, device_ids=dev,
                                               find_unused_parameters=bool(self.groups))
        self.optimizer = torch.optim.Adam(self._param_groups(), weight_decay=cfg.optim.weight_decay)
        self.scheduler = self._scheduler()
        self.amp = cfg.optim.amp and self.info.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.epoch, self.best, self.bad_epochs, self.step = 0, -1.0, 0, 0
        self.best_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.jist_losses: list[tuple[float, float]] = []  # (triplet, CosFace) per step
        if state is not None:
            self._load(state)

    # -- setup -------------------------------------------------------------------------
    def _features(self) -> tuple[list[dict[str, np.ndarray]],
                                 list[dict[str, list[np.ndarray]]]]:
        """Rank 0 encodes every traversal once (and ``augment.copies`` augmented
        versions of the training ones); the others wait, then map the files.
        Returns (clean features of train + val pairs, augmented copies of train pairs)."""
        cfg = self.cfg

        def cache(t, make: bool, augment=None) -> np.ndarray:
            return cached_features(self.model, t, cfg.cache_dir, cfg.batch_size_encode,
                                   self.info.main, make, augment)

        def build(make: bool):
            clean = [{side: cache(getattr(p, side), make) for side in ("db", "query")}
                     for p in self.train_pairs + self.val_pairs]
            augmented = [{side: [cache(getattr(p, side), make, (cfg.augment, c, cfg.seed))
                                 for c in range(cfg.augment.copies)]
                          for side in ("db", "query")} for p in self.train_pairs]
            return clean, augmented
        if self.info.main:
            feats = build(True)
        dist.barrier(self.info)
        if not self.info.main:
            feats = build(False)
        return feats

    def _val_features(self, i: int) -> dict[str, np.ndarray] | None:
        return None if self.features is None else self.features[len(self.train_pairs) + i]

    def _param_groups(self) -> list[dict[str, Any]]:
        o = self.cfg.optim
        enc = [p for p in self.model.encoder.parameters() if p.requires_grad]
        enc_ids = {id(p) for p in self.model.encoder.parameters()}
        rest = [p for p in self.model.parameters() if id(p) not in enc_ids and p.requires_grad]
        groups = [{"params": rest, "lr": o.lr, "name": "aggregator"}]
        if enc and o.encoder_lr > 0:
            groups.append({"params": enc, "lr": o.encoder_lr, "name": "encoder"})
        elif enc:
            self.model.encoder.requires_grad_(False)
        if self.groups:
            groups.append({"params": list(self.net.classifiers.parameters()),
                           "lr": self.cfg.jist.lr, "name": "cosface"})
        if not any(g["params"] for g in groups):
            raise ValueError(f"model {self.model.name} has no trainable parameters in this "
                             "setup (frozen encoder and a parameter-free aggregator)")
        return [g for g in groups if g["params"]]

    def _scheduler(self):
        o = self.cfg.optim
        if o.scheduler == "step":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, o.step_size, o.gamma)
        if o.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, o.epochs)
        return None

    # -- state -----------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"format": ckpt.TRAIN_FORMAT, "version": ckpt.TRAIN_VERSION,
                "config": _plain(dataclasses.asdict(self.cfg)),
                "net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "epoch": self.epoch, "step": self.step,
                "best": self.best, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "history": self.history,
                "torch_rng": torch.get_rng_state()}

    def _load(self, s: dict[str, Any]) -> None:
        try:
            self.net.load_state_dict(s["net"])
            self.optimizer.load_state_dict(s["optimizer"])
            if self.scheduler is not None and s["scheduler"] is not None:
                self.scheduler.load_state_dict(s["scheduler"])
            self.scaler.load_state_dict(s["scaler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise InputError(f"{self.out / ckpt.LAST} does not fit this training setup "
                             f"({first}); resume with the config it started with") from None
        self.epoch, self.step, self.best = s["epoch"], s["step"], s["best"]
        self.bad_epochs, self.history = s["bad_epochs"], list(s["history"])
        self.best_epoch = s.get("best_epoch", 0)
        torch.set_rng_state(s["torch_rng"])
        LOG.info("resumed after epoch %d (best R@%d %.3f, epoch %d)", self.epoch,
                 self.cfg.optim.monitor, self.best, self.best_epoch)

    # -- loop ------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        cfg, t0 = self.cfg, time.perf_counter()
        monitor = str(cfg.optim.monitor)
        if not self.history:  # epoch 0: the untrained model, the baseline of the curve
            if self.info.main:
                self.model.save(self.out / ckpt.INIT)
            self.history.append({"epoch": 0, "loss": None, "val_recall": self._validate(),
                                 "seconds": 0.0})
            self._keep_if_best(self.history[-1]["val_recall"][monitor])
            self._echo(self.history[-1])
        while self.epoch < cfg.optim.epochs and self.bad_epochs < cfg.optim.patience:
            t_epoch = time.perf_counter()
            loss = self._train_epoch()
            self.epoch += 1
            if self.scheduler is not None:
                self.scheduler.step()
            recall = self._validate()
            if not self._keep_if_best(recall[monitor]):
                self.bad_epochs += 1
            self.history.append({"epoch": self.epoch, "loss": loss, "val_recall": recall,
                                 "seconds": time.perf_counter() - t_epoch})
            if self.info.main:
                ckpt.atomic_torch_save(self._state(), self.out / ckpt.LAST, TRAIN_STATE)
                ckpt.write_history(self.out, self.history, f"{self.model.name}: "
                                   f"{cfg.data.reader} validation ({cfg.ground_truth.rule} "
                                   f"rule)", self.best_epoch)
            self._echo(self.history[-1])
            dist.barrier(self.info)
            if self.after_epoch is not None:
                self.after_epoch(self.epoch)
        summary = {"epochs": self.epoch, "best_epoch": self.best_epoch,
                   f"best_val_recall@{monitor}": self.best,
                   "best_val_recall": self.history[self.best_epoch]["val_recall"],
                   "validation_rule": cfg.ground_truth.rule,
                   "stopped_early": self.bad_epochs >= cfg.optim.patience,
                   "seconds": time.perf_counter() - t0, "world_size": self.info.world,
                   "history": self.history, "best_model": str(self.out / ckpt.BEST)}
        dist.teardown(self.info)
        return summary

    def _keep_if_best(self, value: float) -> bool:
        """Save ``best.pt`` when the monitored validation recall improves."""
        if value <= self.best:
            return False
        self.best, self.best_epoch, self.bad_epochs = value, self.epoch, 0
        if self.info.main:
            self.model.save(self.out / ckpt.BEST)
        return True

    def _echo(self, entry: dict[str, Any]) -> None:
        """One line per validated epoch: loss, validation recall, whether it is the best."""
        recall = "  ".join(f"R@{k} {v:.3f}" for k, v in entry["val_recall"].items())
        loss = "untrained" if entry["loss"] is None else f"loss {entry['loss']:.4f}"
        best = "  best so far" if entry["epoch"] == self.best_epoch else ""
        line = (f"epoch {entry['epoch']:>3} ({loss}, {entry['seconds']:.0f} s): validation "
                f"({self.cfg.ground_truth.rule} rule) {recall}{best}")
        LOG.info(line)
        if self.echo is not None and self.info.main:
            self.echo(line)

    def _validate(self) -> dict[str, float]:
        recall = None
        if self.info.main:
            self.model.eval()
            recall = validate(self.model, self.val_pairs, self.cfg, self._val_features)
        return dist.broadcast(self.info, recall)

    def _describe(self, p: int, side: str, windows: np.ndarray) -> torch.Tensor:
        out = []
        with torch.no_grad(), self._autocast():
            for i in range(0, len(windows), 64):
                x = self.inputs[p](side, windows[i:i + 64], self.info.device)
                out.append(self.net(x)[0].float())
        return torch.cat(out)

    def _autocast(self):
        return torch.autocast("cuda", enabled=self.amp)

    def _train_epoch(self) -> float:
        cfg, info = self.cfg, self.info
        order = np.random.default_rng([cfg.seed, self.epoch]).permutation(len(self.queries))
        order = order[:len(order) - len(order) % info.world][info.rank::info.world]
        chunk = max(1, cfg.mining.refresh // info.world)
        losses: list[float] = []
        bar = tqdm(total=len(order), desc=f"epoch {self.epoch + 1}", unit="query",
                   disable=not info.main, leave=False)
        for c, c0 in enumerate(range(0, len(order), chunk)):
            queries = [self.queries[i] for i in order[c0:c0 + chunk]]
            self.net.eval()
            rng = np.random.default_rng([cfg.seed, self.epoch, c, info.rank])
            cache = MinedCache(self.data, queries, cfg.mining, rng, self._describe)
            self.net.train()
            for b0 in range(0, len(queries), cfg.optim.batch_size):
                losses.append(self._train_step(queries[b0:b0 + cfg.optim.batch_size], cache))
                bar.update(len(queries[b0:b0 + cfg.optim.batch_size]))
        bar.close()
        return float(np.mean(losses))

    def _train_step(self, batch: list[Query], cache: MinedCache) -> float:
        cfg, dev = self.cfg, self.info.device
        parts = []
        rng = np.random.default_rng([self.cfg.seed, self.step, self.info.rank, 2])  # augment
        for p, q in batch:
            pos, negs = cache.select((p, q))
            pw = self.data[p]
            parts += [self.inputs[p]("query", pw.q_windows[[q]], dev, rng),
                      self.inputs[p]("db", pw.db_windows[np.concatenate([[pos], negs])], dev,
                                     rng)]
        x = torch.cat(parts)
        images = labels = None
        group = 0
        if self.groups:
            group = self.step % len(self.groups)
            images, labels = self._images(self.groups[group])
        with self._autocast():
            seq, img_loss = self.ddp(x, images, labels, group)
        seq = seq.float().view(len(batch), 2 + cfg.mining.negatives, -1)
        loss = triplet_loss(seq[:, 0], seq[:, 1], seq[:, 2:], cfg.mining.margin)
        total = loss
        if img_loss is not None:
            total = cfg.jist.lambda_seq * loss + cfg.jist.lambda_img * img_loss
            self.jist_losses.append((float(loss.detach()), float(img_loss.detach())))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.net.parameters(), cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return float(loss.detach())

    def _images(self, group: ImageGroup) -> tuple[torch.Tensor, torch.Tensor]:
        """A random batch of the group's frames (features when frozen) and their labels."""
        rng = np.random.default_rng([self.cfg.seed, self.step, self.info.rank, 1])
        n = min(self.cfg.jist.images_per_step, len(group.frames))
        pick = rng.choice(len(group.frames), size=n, replace=False)
        dev, frames = self.info.device, [group.frames[i] for i in pick]
        if self.features is not None:
            x = torch.from_numpy(np.stack([self.features[p][s][i] for p, s, i in frames]))
        else:
            from ..data.images import read_image
            trav = [getattr(self.train_pairs[p], s) for p, s, _ in frames]
            x = self.model.preprocess([read_image(t.paths[i]) for t, (_, _, i)
                                       in zip(trav, frames, strict=True)])
        return x.to(dev), torch.from_numpy(group.labels[pick]).to(dev)


def _plain(value: Any) -> Any:
    """Config values as plain containers (tuples become lists) for weights-only loading."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def train(cfg: TrainConfig, resume: bool = False,
          echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the training described by ``cfg``; returns a summary.
    ``echo`` receives one line per validated epoch."""
    return Trainer(cfg, resume, echo=echo).fit()


__all__ = ["Trainer", "train"]
