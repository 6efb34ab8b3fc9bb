"""Seeded, stratified splits that keep byte-identical images on one side.

Duplicates are grouped by pixel hash and a group is assigned as a whole, so the same picture can
never be both trained on and scored. Groups are shuffled per class (a group's class is its first
label) and dealt out, which keeps the class ratio of every part within one group of the whole.
A run folder stores the split with :meth:`clearface.rundir.RunDir.write_split`.
"""

from __future__ import annotations

import numpy as np

from ..errors import ClearfaceError

TRAIN, VAL, TEST = "train", "val", "test"


def _groups(hashes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(group_of_image, label_of_group)``."""
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    return inverse.ravel(), labels[first]


def _deal(group_labels: np.ndarray, n_parts: int, rng: np.random.Generator) -> np.ndarray:
    """Assign each group to one of ``n_parts`` parts, stratified by class, round robin."""
    part = np.empty(group_labels.size, np.int64)
    offset = 0
    for cls in (0, 1):
        idx = np.flatnonzero(group_labels == cls)
        rng.shuffle(idx)
        part[idx] = (np.arange(idx.size) + offset) % n_parts
        offset += idx.size
    return part


def _as_count(amount, n: int, what: str) -> int:
    if amount is None or amount == 0:
        return 0
    count = int(round(amount * n)) if isinstance(amount, float) and amount < 1 else int(amount)
    if not 0 < count < n:
        raise ClearfaceError(f"{what} {amount!r} leaves nothing to train on ({n} images)")
    return count


def _take(group_labels, group_sizes, want: int, rng) -> np.ndarray:
    """Pick groups (stratified) until about ``want`` images: returns a boolean mask over groups."""
    n = int(group_sizes.sum())
    chosen = np.zeros(group_labels.size, bool)
    for cls in (0, 1):
        idx = np.flatnonzero(group_labels == cls)
        rng.shuffle(idx)
        cls_images = group_sizes[idx].sum()
        target = int(round(want * cls_images / n))
        cum = np.cumsum(group_sizes[idx])
        chosen[idx[: int(np.searchsorted(cum, target, side="left")) + (1 if target else 0)]] = True
    return chosen


def make_split(labels: np.ndarray, hashes: np.ndarray, val_fraction: float = 0.1, holdout=0,
               seed: int = 0, holdout_seed: int = 12345, folds: int = 1) -> np.ndarray:
    """Per-image part names.

    ``holdout`` (a count, or a fraction < 1) images go to ``test`` first, drawn with their own
    ``holdout_seed`` so the test part stays the same whatever training seed is used. With
    ``folds == 1`` the rest is split ``val_fraction`` : rest; with ``folds = K`` each remaining
    image gets a fold id ``fold0`` … ``fold{K-1}``.
    """
    labels = np.asarray(labels)
    n = labels.size
    if hashes.shape[0] != n:
        raise ClearfaceError(f"{hashes.shape[0]} images but {n} labels")
    group, group_label = _groups(hashes, labels)
    sizes = np.bincount(group, minlength=group_label.size)
    parts = np.empty(n, dtype=object)
    in_test = np.zeros(group_label.size, bool)
    n_test = _as_count(holdout, n, "holdout")
    if n_test:
        in_test = _take(group_label, sizes, n_test, np.random.default_rng(holdout_seed))
    rng = np.random.default_rng(seed)
    rest = np.flatnonzero(~in_test)
    if folds > 1:
        fold = np.full(group_label.size, -1)
        fold[rest] = _deal(group_label[rest], folds, rng)
        names = np.array([f"fold{k}" for k in range(folds)], dtype=object)
        parts[:] = np.where(in_test[group], TEST, names[np.maximum(fold[group], 0)])
    else:
        if not 0 < val_fraction < 1:
            raise ClearfaceError(f"val_fraction must be between 0 and 1, got {val_fraction!r}")
        n_rest = int(sizes[rest].sum())
        in_val_sub = _take(group_label[rest], sizes[rest], int(round(val_fraction * n_rest)), rng)
        in_val = np.zeros(group_label.size, bool)
        in_val[rest[in_val_sub]] = True
        parts[:] = np.where(in_test[group], TEST, np.where(in_val[group], VAL, TRAIN))
    return parts.astype(str)


def split_from_config(cfg: dict, hashes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The split a run's settings make (``split_seed`` null: the training seed). Same settings and the same
    pixel hashes give the same parts, so a model file's stored ``config`` rebuilds its run's split."""
    seed = cfg["seed"] if cfg.get("split_seed") is None else cfg["split_seed"]
    return make_split(labels, hashes, val_fraction=cfg["val_fraction"], holdout=cfg["holdout"], seed=seed,
                      holdout_seed=cfg["holdout_seed"], folds=cfg.get("folds", 1))


def fold_parts(parts: np.ndarray, k: int) -> np.ndarray:
    """Fold ``k`` of a k-fold split as train/val/test names."""
    out = np.where(parts == f"fold{k}", VAL, np.where(parts == TEST, TEST, TRAIN))
    return out.astype(str)
