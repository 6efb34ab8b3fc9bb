"""The run folder's checkpoints: what is written, when, and how it is read back safely.

``checkpoints/last.ckpt`` (everything needed to continue: weights, optimiser, scheduler, loop
progress, callback state and the data position) is written after every epoch and, mid-epoch, every
``checkpoint_minutes``. ``checkpoints/best.ckpt`` holds the weights of the epoch with the lowest
validation HTER. Both are written to a temporary name and renamed, so a kill -9 leaves the old
file or the new one. Neither stores a path: a copied run folder resumes from its own files.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain containers only, so
a file planted in a run folder cannot run code; anything else is refused with one line.

Randomness of a training batch is a function of ``(seed, epoch, batch, rank)`` only (see
:func:`batch_seed`), and the sample order of an epoch of ``(seed, epoch)``, so continuing from a
batch boundary reproduces an uninterrupted run bit for bit.
"""

from __future__ import annotations

import os
import pickle
import re
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
from lightning.pytorch.callbacks import Checkpoint

from ..data.cache import sweep_stale_temp
from ..errors import ClearfaceError

LAST, BEST = "last.ckpt", "best.ckpt"
BEST_FORMAT = "clearface-best-1"


def batch_seed(seed: int, epoch: int, batch: int, rank: int = 0) -> int:
    """A 63-bit torch seed for one training batch, independent of everything that ran before it."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(batch), int(rank)])
               .generate_state(2, np.uint64)[0] >> np.uint64(1))


def read_checkpoint(path, kind: str = "checkpoint") -> dict:
    """Tensors and plain containers of ``path``; ClearfaceError (one line naming it) for anything else."""
    import torch
    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "pickle protocol 4": the refusal below says enough
            ck = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ClearfaceError(f"{p}: no such {kind}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ClearfaceError(f"{p}: not a clearface {kind}, refused ({_reason(exc)})") from None
    if not isinstance(ck, dict) or not isinstance(ck.get("state_dict"), dict):
        raise ClearfaceError(f"{p}: not a clearface {kind}, refused (no state_dict)")
    return ck


def _reason(exc: BaseException) -> str:
    text = str(exc)
    m = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text)
    if m:
        return f"it would call {m.group(1)}; only tensors and plain data are loaded"
    m = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    first = (m.group(1) if m else text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
    return first.strip()[:160]


def check_resumable(ckpt_dir: Path) -> Path | None:
    """Validate the folder's checkpoints before any training starts; the last one to continue from."""
    last, best = ckpt_dir / LAST, ckpt_dir / BEST
    if best.exists():
        read_checkpoint(best)  # ours, or a whole Lightning checkpoint of an older run folder
    if not last.exists():
        return None
    ck = read_checkpoint(last)
    if not {"loops", "optimizer_states", "epoch", "global_step"} <= set(ck):
        raise ClearfaceError(f"{last}: not a resumable clearface checkpoint (no training state), refused")
    return last


def check_weights_fit(module, path: Path, state: dict | None = None) -> dict:
    """The checkpoint's weights, if they are exactly the module's tensors (names and shapes)."""
    state = state if state is not None else read_checkpoint(path)["state_dict"]
    own = module.state_dict()
    bad = sorted({k for k in own if k not in state or tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)}
                 | (set(state) - set(own)))
    if bad:
        raise ClearfaceError(f"{path}: its weights do not fit this run's model ({len(bad)} tensors differ, "
                             f"e.g. {bad[0]!r}), refused")
    return state


def load_best_weights(module, ckpt_dir: Path) -> int | None:
    """Load ``best.ckpt``'s weights into ``module``; return its epoch (1-based, 0 where the file does not
    say), or None when there is no ``best.ckpt`` (the module keeps its last weights)."""
    best = ckpt_dir / BEST
    if not best.exists():
        return None
    ck = read_checkpoint(best)
    module.load_state_dict(check_weights_fit(module, best, ck["state_dict"]))
    return int(ck.get("epoch") or 0)


class RunCheckpoints(Checkpoint):
    """Writes ``last.ckpt`` (every epoch + every ``interval_s`` mid-epoch) and ``best.ckpt`` (min val_hter).

    A :class:`~lightning.pytorch.callbacks.Checkpoint`, so Lightning runs it after every other
    callback: the early-stopping and summary state it saves is already this epoch's.
    """

    def __init__(self, folder, interval_s: float | None = None, monitor: str = "val_hter"):
        self.folder = Path(folder)
        self.interval_s = float(interval_s) if interval_s else None
        self.monitor = monitor
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self._last_save = time.monotonic()

    @property
    def state_key(self) -> str:
        return "RunCheckpoints"

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best_score = state.get("best_score")
        self.best_epoch = state.get("best_epoch")

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.is_global_zero:
            self.folder.mkdir(parents=True, exist_ok=True)
            sweep_stale_temp(self.folder, hidden_only=True)  # ``.last.ckpt.tmp<PID>`` of a killed run

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_save = time.monotonic()
        # trainer.should_stop is not saved: a run killed after early stopping decided (but before it
        # finished) must end here too, not train on. The restored early-stopping state tells.
        for cb in trainer.early_stopping_callbacks:
            if 0 < cb.patience <= cb.wait_count:
                trainer.should_stop = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.interval_s:
            return
        due = bool(trainer.strategy.broadcast(time.monotonic() - self._last_save >= self.interval_s))
        # The epoch's last batch is left to the end-of-epoch save (validation runs in between).
        if due and batch_idx + 1 < trainer.num_training_batches:
            self._save_last(trainer, (trainer.current_epoch, batch_idx + 1))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        score = float(value) if value is not None else float("nan")
        if np.isfinite(score) and (self.best_score is None or score < self.best_score):
            self.best_score, self.best_epoch = score, trainer.current_epoch + 1
            # best before last: a kill in between redoes this epoch, which writes the same best again
            self._save_best(trainer, pl_module)
        self._save_last(trainer, (trainer.current_epoch + 1, 0))

    # ------------------------------------------------------------------ writing
    def _save_best(self, trainer, pl_module) -> None:
        import torch
        if trainer.is_global_zero:
            state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
            payload = {"format": BEST_FORMAT, "epoch": self.best_epoch, self.monitor: self.best_score,
                       "state_dict": state}
            self._replace(self.folder / BEST, lambda tmp: torch.save(payload, tmp))
        trainer.strategy.barrier("clearface-best")

    def _save_last(self, trainer, resume_at: tuple[int, int]) -> None:
        dm = trainer.datamodule
        if dm is not None:
            dm.resume_at = resume_at  # lands in the checkpoint through FaceDataModule.state_dict
        final = self.folder / LAST
        tmp = final.with_name(f".{LAST}.tmp{os.getpid()}")
        tmp = Path(trainer.strategy.broadcast(str(tmp)))  # one name on every rank
        # Saving (not loading): the full training state, not weights only. Collective; rank 0 writes.
        trainer.save_checkpoint(tmp, False)
        if trainer.is_global_zero:
            self._replace(final, None, tmp)
        trainer.strategy.barrier("clearface-last")
        self._last_save = time.monotonic()

    @staticmethod
    def _replace(final: Path, write, tmp: Path | None = None) -> None:
        tmp = tmp or final.with_name(f".{final.name}.tmp{os.getpid()}")
        try:
            if write is not None:
                write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
