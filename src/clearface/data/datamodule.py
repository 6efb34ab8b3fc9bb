"""A ``LightningDataModule`` over the in-memory uint8 cache.

Batches are whole index arrays: the sampler yields one array per batch and the dataset gathers it
with one fancy-index, so a batch costs a memcpy rather than 128 Python calls. Sharding across DDP
ranks is done here (not by Lightning's DistributedSampler) so every training image is used once per
epoch on exactly one rank and validation is scored without padding duplicates.

Resuming: an epoch's order depends on ``(seed, epoch)`` only, and the data module's state (saved in
every checkpoint) says where training stopped, ``(epoch, batches done)``; the sampler of a resumed
run starts that epoch at that batch, so it serves exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ClearfaceError


class BatchGather(Dataset):
    """``dataset[index_array] -> (uint8 images, float labels, indices)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        idx = torch.as_tensor(idx)
        # A negative index is a gan_oversample slot: a placeholder the module fills with a generated face.
        real = idx.clamp(min=0)
        return self.images[real], self.labels[real], idx


SYNTHETIC = -1  # an epoch_indices slot for a generated minority face (gan_oversample)


def epoch_indices(labels: np.ndarray, strategy: str, rng: np.random.Generator,
                  gan_ratio: float = 0.0) -> np.ndarray:
    """One epoch's training order (positions into ``labels``), after the imbalance strategy.

    ``gan_oversample`` is ``oversample_minority`` with a share ``gan_ratio`` of the repeated
    minority slots marked :data:`SYNTHETIC` (filled with generator samples by the module): every
    real minority image still comes once per epoch, and ratio 0 is oversample_minority exactly."""
    n = labels.size
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    minority, majority = (neg, pos) if neg.size <= pos.size else (pos, neg)
    if strategy == "balanced_sampler":
        # Draw with replacement, each class with probability 1/2; epoch length unchanged.
        cls = rng.random(n) < 0.5
        return np.where(cls, rng.choice(pos, n), rng.choice(neg, n))
    if strategy == "undersample":
        idx = np.concatenate([minority, rng.choice(majority, minority.size, replace=False)])
    elif strategy in ("oversample_minority", "gan_oversample"):
        reps = rng.choice(minority, majority.size - minority.size, replace=True)
        if strategy == "gan_oversample":
            reps[:int(round(gan_ratio * reps.size))] = SYNTHETIC  # reps are drawn at random: any share will do
        idx = np.concatenate([majority, minority, reps])
    else:
        idx = np.arange(n)
    return rng.permutation(idx)


class EpochBatchSampler:
    """Yields this rank's batches of one epoch; reseeded per epoch, same order on every rank."""

    def __init__(self, labels: np.ndarray, batch_size: int, strategy: str, seed: int,
                 rank: int = 0, world_size: int = 1, gan_ratio: float = 0.0):
        self.labels, self.batch_size, self.strategy, self.gan_ratio = labels, batch_size, strategy, gan_ratio
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0
        self.resume_at: tuple[int, int] | None = None  # (epoch, first batch) of a resumed run

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _local(self) -> np.ndarray:
        idx = epoch_indices(self.labels, self.strategy, np.random.default_rng((self.seed, self.epoch)), self.gan_ratio)
        usable = len(idx) - len(idx) % self.world_size  # drop the remainder: no image is seen twice
        # Interleaved shards: global batch b is exactly idx[b*B:(b+1)*B], split across ranks, so a
        # DDP run takes the same optimisation steps as one process with the same global batch.
        return idx[:usable][self.rank::self.world_size]

    def __iter__(self):
        local = self._local()
        n_batches = max(1, len(local) // self.batch_size) if len(local) >= self.batch_size else 1
        first = self.resume_at[1] if self.resume_at and self.resume_at[0] == self.epoch else 0
        for b in range(first, n_batches):
            yield local[b * self.batch_size:(b + 1) * self.batch_size]

    def __len__(self):
        local = len(epoch_indices(self.labels, self.strategy, np.random.default_rng(0))) // self.world_size
        return max(1, local // self.batch_size)


class ResumableLoader(DataLoader):
    """The training loader, marked resumable for Lightning: its position needs no state of its own,
    because :class:`FaceDataModule` records ``(epoch, batches done)`` in every checkpoint and the
    sampler of a resumed run starts there."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ShardSampler:
    """Sequential batches of this rank's share (``rank::world_size``): no padding, no repeats."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.idx = np.arange(n)[rank::world_size]
        self.batch_size = batch_size

    def __iter__(self):
        for s in range(0, len(self.idx), self.batch_size):
            yield self.idx[s:s + self.batch_size]

    def __len__(self):
        return (len(self.idx) + self.batch_size - 1) // self.batch_size


class FaceDataModule(L.LightningDataModule):
    def __init__(self, images: np.ndarray, labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
                 batch_size: int, eval_batch_size: int, strategy: str, seed: int,
                 extra_train: tuple[np.ndarray, np.ndarray] | None = None, gan_ratio: float = 0.0,
                 train_targets: np.ndarray | None = None):
        """``extra_train``: (uint8 images, labels) used for training only, e.g. pseudo-labelled images.
        ``gan_ratio``: share of the repeated minority slots given to generated faces (gan_oversample).
        ``train_targets``: float loss targets of the training images (training part, then extra_train),
        e.g. labels mixed with a teacher's scores; the imbalance strategy still reads the hard labels."""
        super().__init__()
        for part, idx in (("training", train_idx), ("validation", val_idx)):
            classes = np.unique(labels[idx])
            if classes.size < 2:
                raise ClearfaceError(f"the {part} part has only class {classes.tolist()} "
                                     f"({len(idx)} images): use more images or another split")
        # Own, contiguous copies: fast gathers, and the cache memmap can be closed.
        train_images, train_labels = np.ascontiguousarray(images[train_idx]), labels[train_idx]
        if extra_train is not None:
            train_images = np.concatenate([train_images, np.asarray(extra_train[0])])
            train_labels = np.concatenate([train_labels, np.asarray(extra_train[1]).astype(labels.dtype)])
        if train_targets is None:
            train_targets = train_labels
        elif len(train_targets) != len(train_labels):
            raise ValueError(f"{len(train_targets)} targets for {len(train_labels)} training images")
        self.train = BatchGather(torch.from_numpy(train_images),
                                 torch.from_numpy(np.asarray(train_targets, np.float32)))
        self.val = BatchGather(torch.from_numpy(np.ascontiguousarray(images[val_idx])),
                               torch.from_numpy(labels[val_idx].astype(np.float32)))
        self.train_labels = train_labels
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.strategy, self.seed, self.gan_ratio = strategy, seed, gan_ratio
        self.train_sampler: EpochBatchSampler | None = None
        self.resume_at: tuple[int, int] | None = None  # set by the checkpoint callback before each save
        self._resume_from: tuple[int, int] | None = None  # read back from a checkpoint

    def state_dict(self) -> dict:
        if self.resume_at is None:
            return {}
        return {"resume_epoch": int(self.resume_at[0]), "resume_batch": int(self.resume_at[1])}

    def load_state_dict(self, state: dict) -> None:
        if "resume_epoch" in state:
            self._resume_from = (int(state["resume_epoch"]), int(state["resume_batch"]))

    def _rank_world(self):
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def train_dataloader(self):
        rank, world = self._rank_world()
        # batch_size is the global batch: each of the world_size processes takes its share.
        per_rank = max(1, self.batch_size // world)
        self.train_sampler = EpochBatchSampler(self.train_labels, per_rank, self.strategy, self.seed, rank, world,
                                               self.gan_ratio)
        if self._resume_from is not None:
            # Lightning builds the first iterator before it moves current_epoch past a finished
            # epoch, so the checkpoint's own record of the next batch decides.
            self.train_sampler.resume_at = self._resume_from
            self.train_sampler.set_epoch(self._resume_from[0])
        elif self.trainer is not None:
            self.train_sampler.set_epoch(self.trainer.current_epoch)
        return ResumableLoader(self.train, sampler=self.train_sampler, batch_size=None, num_workers=0)

    def val_dataloader(self):
        rank, world = self._rank_world()
        return DataLoader(self.val, sampler=ShardSampler(len(self.val), self.eval_batch_size, rank, world),
                          batch_size=None, num_workers=0)
