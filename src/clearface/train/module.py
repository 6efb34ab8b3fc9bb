"""The LightningModule: batched augmentation, the imbalance-aware loss, and per-epoch HTER."""

from __future__ import annotations

import time

import lightning as L
import numpy as np
import torch

from .. import metrics
from ..calibration import fit_threshold
from ..data.augment import AugmentConfig, augment_batch, mixup
from ..engines import tta_probability
from ..gan.sampling import fill_synthetic
from ..models import get_model, get_model_entry
from . import losses
from .checkpoints import batch_seed


def epoch_mean(values) -> float:
    """Mean of one epoch's batch losses (tensors, maybe on several devices), in batch order."""
    return float(sum(float(x) for x in values) / len(values)) if len(values) else float("nan")


class HTERModule(L.LightningModule):
    def __init__(self, cfg: dict, pos_weight: float, seed: int = 0, gan: tuple | None = None,
                 init_state: dict | None = None):
        """``seed``: with the epoch and batch number, it alone decides a training batch's randomness.
        ``gan``: gan_oversample's ``(frozen generator, class)`` (``generator_for_training``).
        ``init_state``: starting weights (``init_from``, checked by :func:`.init_weights.init_state`)."""
        super().__init__()
        self.save_hyperparameters(ignore=["gan", "init_state"])  # resolved config lands in every checkpoint
        self.cfg = cfg
        self.seed = int(seed)
        entry = get_model_entry(cfg["model"])
        self.model = get_model(cfg["model"], **(cfg.get("model_kwargs") or {}))
        if init_state is not None:
            self.model.load_state_dict(init_state)
        if cfg["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        # ema_decay: an exponential moving average of the weights (batch-norm statistics included) is what
        # validation scores, best.ckpt keeps and the model file stores; the raw weights only train. As a
        # submodule it rides in every checkpoint, so a resumed run continues the same average.
        self.ema = None
        if cfg.get("ema_decay"):
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(float(cfg["ema_decay"])),
                                     use_buffers=True)
            self.ema.requires_grad_(False)  # never trained: the optimiser and DDP must not see it
        self.register_buffer("mean", torch.tensor(entry.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(entry.std).view(1, 3, 1, 1), persistent=False)
        self.aug = AugmentConfig.from_dict(cfg.get("augment"))
        # gan_oversample's frozen generator, in a tuple so it is no submodule: never in checkpoints or the model file
        self._gan = gan
        self.pos_weight = pos_weight
        self._val = []
        self._train_loss = []
        self._epoch_start = None
        self._seen = 0
        self.last_val: dict = {}
        self._full_size = getattr(self.model, "input_size", None)  # what validation and the model file use

    @property
    def scoring_model(self):
        """The network that validation scores and the model file stores: the weight average, if kept."""
        return self.model if self.ema is None else self.ema.module

    # ------------------------------------------------------------------ helpers
    def _prepare(self, x_uint8: torch.Tensor, train: bool) -> torch.Tensor:
        x = x_uint8.float().div_(255)
        if train:
            x = augment_batch(x, self.aug)
        x = (x - self.mean) / self.std
        if self.cfg["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def loss(self, logits, y):
        c = self.cfg
        if hasattr(self.model, "training_loss"):  # e.g. capsule networks' margin loss
            return self.model.training_loss(y)
        strategy = c["imbalance"]
        if strategy == "focal":
            return losses.focal(logits, y, c["focal_gamma"], c["label_smoothing"])
        if strategy == "soft_hter":
            return losses.soft_hter(logits, y, c["soft_hter_temperature"])
        pw = self.pos_weight if strategy == "pos_weight" else None
        return losses.bce(logits, y, pw, c["label_smoothing"])

    def score(self, x_uint8):
        """Class-1 probabilities with the configured TTA (as the saved model file will compute them)."""
        x = self._prepare(x_uint8, train=False)
        return tta_probability([self.scoring_model], x, self.cfg["tta"])

    # ------------------------------------------------------------------ training
    def on_train_start(self):
        # A run resumed mid-epoch gets no on_train_epoch_start for that epoch: size it here too.
        self._set_train_size(self.current_epoch)

    def on_train_epoch_start(self):
        dm = self.trainer.datamodule
        if dm is not None and dm.train_sampler is not None:
            dm.train_sampler.set_epoch(self.current_epoch)
        self._set_train_size(self.current_epoch)
        self._epoch_start, self._seen, self._train_loss = time.perf_counter(), 0, []

    def _set_train_size(self, epoch: int | None) -> None:
        """Progressive resizing: the epoch's input size from ``train_sizes``; ``None``: the model's own.

        Only the internal enlargement changes (the network is fully convolutional up to global pooling),
        so the weights are the same at every size; scoring always happens at ``model_kwargs.input_size``."""
        sizes = self.cfg.get("train_sizes")
        size = self._full_size if epoch is None or not sizes else sizes[min(epoch, len(sizes) - 1)]
        if sizes:
            self.model.input_size = size
        if epoch is not None and size is not None:
            self.last_val["train_size"] = size  # summary.csv's column

    def on_train_batch_start(self, batch, batch_idx):
        # Augmentation, mixup and dropout draw from the global generators; reseeding them per batch
        # makes a run continued from any batch boundary draw exactly what an uninterrupted one does.
        torch.manual_seed(batch_seed(self.seed, self.current_epoch, batch_idx, self.global_rank))

    def training_step(self, batch, batch_idx):
        x, y, idx = batch
        if self._gan is not None:
            x, y = fill_synthetic(self._gan, x, y, idx)
        x = self._prepare(x, train=True)
        if self.aug.mixup:
            x, y = mixup(x, y, self.aug.mixup)
        logits = self.model(x)
        loss = self.loss(logits, y)
        self._seen += len(y)
        self._train_loss.append(loss.detach())
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def on_train_end(self):
        self._set_train_size(None)

    def on_train_epoch_end(self):
        elapsed = time.perf_counter() - (self._epoch_start or time.perf_counter())
        self.last_val["train_loss"] = epoch_mean(self._train_loss)
        self.last_val["train_seconds"] = elapsed
        self.last_val["train_images_per_s"] = self._seen * self.trainer.world_size / max(elapsed, 1e-9)

    def on_save_checkpoint(self, checkpoint):
        # A mid-epoch checkpoint carries the epoch's losses so far: the resumed epoch's mean is the same.
        checkpoint["clearface_epoch"] = {
            "train_loss": torch.stack([x.detach().float().cpu() for x in self._train_loss]) if self._train_loss
            else torch.zeros(0), "seen": int(self._seen)}

    def on_load_checkpoint(self, checkpoint):
        state = checkpoint.get("clearface_epoch")
        if state is not None:
            self._train_loss = list(state["train_loss"].unbind(0))
            self._seen = int(state["seen"])

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self):
        self._set_train_size(None)
        self._val = []

    def validation_step(self, batch, batch_idx):
        x, y, idx = batch
        self._val.append((self.score(x).float(), y, idx))

    def gathered_validation(self):
        """All ranks' validation scores, each image once, in index order."""
        p = torch.cat([v[0] for v in self._val])
        y = torch.cat([v[1] for v in self._val])
        idx = torch.cat([v[2] for v in self._val]).to(p.device)
        if self.trainer.world_size > 1:
            p, y, idx = (self.all_gather(t).reshape(-1) for t in (p, y, idx))
        order = torch.argsort(idx)
        idx, p, y = idx[order], p[order], y[order]
        keep = torch.ones_like(idx, dtype=torch.bool)
        keep[1:] = idx[1:] != idx[:-1]  # ShardSampler never pads, but be safe against repeats
        return p[keep].cpu().numpy(), y[keep].cpu().numpy().astype(np.int8)

    def on_validation_epoch_end(self):
        if not self._val:
            return
        p, y = self.gathered_validation()
        eps = 1e-6
        pc = np.clip(p, eps, 1 - eps)
        val_loss = float(-(y * np.log(pc) + (1 - y) * np.log(1 - pc)).mean())
        tau = fit_threshold(p, y, self.cfg["threshold_method"])
        s = metrics.summarize(p, y, tau)
        values = {"val_loss": val_loss, "val_hter": s.hter, "val_far": s.far, "val_frr": s.frr,
                  "val_eer": s.eer, "val_auc": s.auc, "val_threshold": tau, "val_n": float(s.n)}
        # Identical on every rank (scores were gathered); the mean over ranks only keeps Lightning's
        # epoch-level bookkeeping consistent.
        for k, v in values.items():
            self.log(k, v, prog_bar=k in ("val_hter", "val_auc"), sync_dist=self.trainer.world_size > 1)
        self.last_val.update(values)
        self._val = []

    # ------------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        c = self.cfg
        decay, no_decay = [], []
        for name, prm in self.model.named_parameters():
            if not prm.requires_grad:
                continue
            (no_decay if prm.ndim <= 1 else decay).append(prm)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": c["weight_decay"]},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=c["lr"])
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if c["schedule"] == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=c["lr"], total_steps=total, pct_start=0.15,
                                                        div_factor=20, final_div_factor=200)
        elif c["schedule"] == "cosine":
            warm = max(1, int(total * c["warmup_epochs"] / max(1, c["epochs"])))
            sched = torch.optim.lr_scheduler.SequentialLR(opt, [
                torch.optim.lr_scheduler.LinearLR(opt, 0.05, 1.0, warm),
                torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, total - warm), eta_min=c["lr"] * 0.005)],
                milestones=[warm])
        else:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
