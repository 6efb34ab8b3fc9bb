"""``clearface gan``: train the class-conditional GAN on the training part of a run's split only.

The run folder's ``split.csv`` decides which images the GAN may see: only those marked ``train``.
Validation and held-out images never enter a batch, and the generator file records the pixel
hashes of the images it saw so ``train --imbalance gan_oversample`` can check that again.

An epoch is every minority training image plus as many majority ones drawn afresh (the
``undersample`` order of the classifier's sampler), so both classes are learned at equal weight
and the epoch's length is set by the minority class. Output folder: ``generator.pt`` (rewritten
after every epoch, so a stopped run leaves a usable generator), ``checkpoints/last.ckpt``
(resume with ``--resume``), TensorBoard events with a sample grid per epoch under ``tb/``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..data.split import TRAIN
from ..errors import ClearfaceError
from ..rundir import RunDir
from .sampling import GENERATOR_FILE_NAME, make_generator_file, save_generator_file

log = logging.getLogger("clearface")


def training_part(run: RunDir, data, labels, cache_dir=None, preprocess=None):
    """``(uint8 images, labels, pixel hashes, split sha256)`` of the run's ``train`` part, nothing else."""
    from ..data import load_labelled
    from ..outputs import file_sha256
    n_rows = len(run.read_split())  # a run on the first N images has N rows: decode only those
    imageset, y = load_labelled(data, labels, limit=n_rows, cache_dir=cache_dir, step=preprocess)
    parts = run.read_split(imageset.names)  # same images, same order, or one line saying where not
    train_idx = np.flatnonzero(parts == TRAIN)
    if not train_idx.size or np.unique(y[train_idx]).size < 2:
        raise ClearfaceError(f"{run.split_path}: the 'train' part needs images of both classes")
    return (np.ascontiguousarray(imageset.images[train_idx]), y[train_idx], imageset.hashes[train_idx],
            file_sha256(run.split_path))


def _snapshot_callback(out: Path, run: RunDir, minority: int, split_sha: str, hashes: np.ndarray):
    from lightning.pytorch.callbacks import Callback

    from ..train.module import epoch_mean

    class GeneratorSnapshot(Callback):
        """Rewrites ``generator.pt`` after every epoch: a stopped run still leaves a usable generator."""

        def on_train_epoch_end(self, trainer, pl_module):
            blob = make_generator_file(pl_module.generator, minority, run.path.resolve(), split_sha, hashes,
                                       trainer.current_epoch + 1)
            save_generator_file(blob, out / GENERATOR_FILE_NAME)
            # callbacks run before the module's own epoch end: its loss lists are still this epoch's
            log.info("gan epoch %d: d_loss %.3f g_loss %.3f sample diversity %.3f", trainer.current_epoch + 1,
                     *(epoch_mean(pl_module._losses[k]) for k in ("d_loss", "g_loss")), pl_module.sample_diversity())

    return GeneratorSnapshot()


def train_gan(run, data, labels, out, epochs: int = 25, batch_size: int = 64, z_dim: int = 64, ngf: int = 32,
              lr: float = 1e-4, d_lr_factor: float = 4.0, betas=(0.5, 0.999), seed: int = 0, num_threads: int = 1,
              max_minutes: float | None = None, resume: bool = False, cache_dir=None, preprocess=None) -> Path:
    """Train (or continue) the GAN; returns the generator file's path. Progress goes to the
    ``clearface`` logger, as ``train``'s does (and to ``OUT/train.log``)."""
    import lightning as L
    import torch
    from lightning.pytorch.loggers import TensorBoardLogger

    from ..data.datamodule import BatchGather, EpochBatchSampler, ResumableLoader
    from ..train.checkpoints import RunCheckpoints, check_resumable
    from ..train.run import _setup_logging
    from .module import GANModule

    run, out = RunDir(run), Path(out)
    ckpt_dir = out / RunDir.CHECKPOINTS
    last = check_resumable(ckpt_dir) if resume else None
    out.mkdir(parents=True, exist_ok=True)
    _setup_logging(out)
    torch.set_num_threads(int(num_threads))
    t0 = time.perf_counter()
    images, y, hashes, split_sha = training_part(run, data, labels, cache_dir, preprocess)
    minority = int(np.bincount(y, minlength=2).argmin())
    log.info("gan: %d training images of %s (%d class 0, %d class 1); generator for class %d",
             len(y), run.split_path, int((y == 0).sum()), int(y.sum()), minority)

    L.seed_everything(seed, workers=True, verbose=False)
    module = GANModule(z_dim=z_dim, ngf=ngf, ndf=ngf, lr=lr, d_lr_factor=d_lr_factor, betas=tuple(betas), seed=seed)
    sampler = EpochBatchSampler(y, batch_size, "undersample", seed)
    loader = ResumableLoader(BatchGather(torch.from_numpy(images), torch.from_numpy(y.astype(np.float32))),
                             sampler=sampler, batch_size=None, num_workers=0)
    trainer = L.Trainer(
        max_epochs=epochs, max_time={"minutes": float(max_minutes)} if max_minutes else None, accelerator="cpu",
        devices=1, callbacks=[_snapshot_callback(out, run, minority, split_sha, hashes), RunCheckpoints(ckpt_dir)],
        logger=TensorBoardLogger(str(out), name=RunDir.TENSORBOARD, version=""), default_root_dir=str(out),
        num_sanity_val_steps=0, use_distributed_sampler=False, enable_progress_bar=False, log_every_n_steps=10,
        enable_model_summary=False)
    if last is not None:
        log.info("gan: resuming from %s", last)
    trainer.fit(module, loader, ckpt_path=str(last) if last is not None else None, weights_only=True)
    log.info("gan: %d epochs done in %.1f min", trainer.current_epoch, (time.perf_counter() - t0) / 60)
    return out / GENERATOR_FILE_NAME
