"""Per-epoch ``summary.csv`` beside the checkpoints (timm-style), written by rank 0 only."""

from __future__ import annotations

import logging
import time

import lightning as L

from ..rundir import RunDir
from .module import epoch_mean

log = logging.getLogger("clearface")

COLUMNS = ["epoch", "train_loss", "val_loss", "val_hter", "val_far", "val_frr", "val_eer", "val_auc",
           "val_threshold", "lr", "train_seconds", "train_images_per_s", "val_seconds", "train_minutes_total",
           "holdout_hter", "holdout_far", "holdout_frr", "train_size"]


class EpochSummary(L.Callback):
    def __init__(self, run: RunDir):
        self.run = run
        self.rows: list[dict] = run.read_summary_rows()  # resumed run: keep earlier epochs

    def on_train_start(self, trainer, pl_module):
        # A run resumed mid-epoch gets no on_train_epoch_start for that epoch.
        self._t0, self._tv = time.perf_counter(), None

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0, self._tv = time.perf_counter(), None

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._tv = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        now = time.perf_counter()
        t_train = (self._tv or now) - self._t0
        losses = pl_module._train_loss
        v = pl_module.last_val
        row = {"epoch": trainer.current_epoch + 1,
               "train_loss": epoch_mean(losses),
               **{k: v.get(k, float("nan")) for k in COLUMNS[2:9]},
               "lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan"),
               "train_seconds": t_train,
               "train_images_per_s": pl_module._seen * trainer.world_size / max(t_train, 1e-9),
               "val_seconds": now - self._tv if self._tv else 0.0}
        earlier = sum(float(r["train_seconds"]) for r in self.rows if int(r["epoch"]) < row["epoch"])
        row["train_minutes_total"] = (earlier + t_train) / 60
        for k in ("holdout_hter", "holdout_far", "holdout_frr"):
            row[k] = v.get(k, "")
        row["train_size"] = v.get("train_size", "")
        row = {k: (round(x, 6) if isinstance(x, float) else x) for k, x in row.items()}
        self.rows = [r for r in self.rows if int(r["epoch"]) != row["epoch"]] + [row]
        if trainer.is_global_zero:
            self.run.write_summary_rows(self.rows, COLUMNS)
            log.info("epoch %d: train_loss %.4f val_hter %.4f (FAR %.4f FRR %.4f) AUC %.4f  %.0f img/s",
                     row["epoch"], row["train_loss"], row["val_hter"], row["val_far"], row["val_frr"],
                     row["val_auc"], row["train_images_per_s"])
        pl_module.log("train_images_per_s", float(row["train_images_per_s"]))


class StopAfter(L.Callback):
    """End ``fit`` once ``epochs`` epochs are done in total; the schedule keeps the full budget."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_start(self, trainer, pl_module):
        if trainer.current_epoch >= self.epochs:  # resumed after this invocation's last epoch: nothing to do
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class HoldoutTracker(L.Callback):
    """Scores the held-out part after each epoch at that epoch's validation tau — for the
    time-to-quality curve only. Nothing reads it back: not early stopping, not checkpoint choice,
    not tau. Runs on rank 0 before :class:`EpochSummary` writes the row."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def on_train_epoch_end(self, trainer, pl_module):
        if not trainer.is_global_zero or "val_threshold" not in pl_module.last_val:
            return
        import torch

        from .. import metrics
        from ..engines import score_in_batches, uint8_tensor
        was_training = pl_module.training
        pl_module.eval()
        with torch.inference_mode():
            scores = score_in_batches(
                lambda c: pl_module.score(uint8_tensor(c).to(pl_module.device)).float().cpu().numpy(), self.images)
        pl_module.train(was_training)
        tau = pl_module.last_val["val_threshold"]
        far, frr = metrics.far_frr(scores, self.labels, tau)
        pl_module.last_val.update(holdout_hter=(far + frr) / 2, holdout_far=far, holdout_frr=frr)
        pl_module.log("holdout_hter", (far + frr) / 2, rank_zero_only=True)
