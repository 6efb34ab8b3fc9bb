import numpy as np
import pytest
import torch

from clearface.data.augment import AugmentConfig, augment_batch, mixup
from clearface.data.datamodule import EpochBatchSampler, ShardSampler, epoch_indices
from clearface.errors import ClearfaceError


def test_augment_keeps_shape_range_and_changes_images():
    x = torch.rand(16, 3, 64, 64)
    out = augment_batch(x.clone(), AugmentConfig(erase=0.5))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x)


def test_augment_off_is_identity():
    cfg = AugmentConfig(flip=False, translate=0, scale=(1.0, 1.0), rotate=0, brightness=0, contrast=0,
                        saturation=0, grayscale=0)
    x = torch.rand(4, 3, 64, 64)
    assert torch.allclose(augment_batch(x.clone(), cfg), x, atol=1e-5)


def test_flip_only_mirrors():
    cfg = AugmentConfig(translate=0, scale=(1.0, 1.0), rotate=0, brightness=0, contrast=0, saturation=0, grayscale=0)
    x = torch.rand(64, 3, 64, 64)
    out = augment_batch(x.clone(), cfg)
    same = torch.isclose(out, x, atol=1e-5).flatten(1).all(1)
    mirrored = torch.isclose(out, x.flip(3), atol=1e-5).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()


def test_lowres_blurs_only_chosen_images():
    cfg = AugmentConfig(flip=False, translate=0, scale=(1.0, 1.0), rotate=0, brightness=0, contrast=0,
                        saturation=0, grayscale=0, lowres=0.5)
    x = torch.rand(64, 3, 64, 64)
    out = augment_batch(x.clone(), cfg)
    changed = ~torch.isclose(out, x, atol=1e-5).flatten(1).all(1)
    assert changed.any() and (~changed).any()
    # blurred images lose high-frequency energy
    hf = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean((1, 2, 3))
    assert (hf(out[changed]) < hf(x[changed])).all()


def test_unknown_augment_option():
    with pytest.raises(ClearfaceError, match="unknown augment"):
        AugmentConfig.from_dict({"flipp": True})


def test_mixup_soft_labels():
    x, y = torch.rand(8, 3, 8, 8), torch.tensor([0, 1] * 4, dtype=torch.float32)
    xm, ym = mixup(x, y, 0.4)
    assert xm.shape == x.shape and ((ym >= 0) & (ym <= 1)).all()


LABELS = np.r_[np.zeros(100), np.ones(900)].astype(np.int8)


@pytest.mark.parametrize("strategy,expected_ratio,expected_len", [
    ("pos_weight", 0.9, 1000), ("none", 0.9, 1000), ("focal", 0.9, 1000), ("soft_hter", 0.9, 1000),
    ("balanced_sampler", 0.5, 1000), ("undersample", 0.5, 200), ("oversample_minority", 0.5, 1800),
])
def test_imbalance_strategies_class_ratio(strategy, expected_ratio, expected_len):
    idx = epoch_indices(LABELS, strategy, np.random.default_rng(0))
    assert len(idx) == expected_len
    assert LABELS[idx].mean() == pytest.approx(expected_ratio, abs=0.04)


def test_undersample_keeps_every_minority_image():
    idx = epoch_indices(LABELS, "undersample", np.random.default_rng(0))
    assert set(np.flatnonzero(LABELS == 0)) <= set(idx.tolist())


def test_epoch_sampler_reshuffles_and_shards_without_duplicates():
    s = EpochBatchSampler(LABELS, 64, "pos_weight", seed=1)
    s.set_epoch(0)
    e0 = np.concatenate(list(s))
    s.set_epoch(1)
    e1 = np.concatenate(list(s))
    assert not (e0 == e1).all()
    shards, batches = [], []
    for rank in range(2):
        r = EpochBatchSampler(LABELS, 32, "pos_weight", seed=1, rank=rank, world_size=2)
        r.set_epoch(0)
        batches.append(list(r))
        shards.append(np.concatenate(batches[-1]))
    allidx = np.concatenate(shards)
    assert len(allidx) == len(set(allidx.tolist()))
    assert len({len(x) for x in shards}) == 1  # equal work per rank
    # global batch b of a 2-rank run (32 per rank) = batch b of one process with batch 64
    for b in range(len(batches[0])):
        joint = set(batches[0][b].tolist()) | set(batches[1][b].tolist())
        assert joint == set(e0[b * 64:(b + 1) * 64].tolist())


def test_shard_sampler_covers_each_once():
    got = np.concatenate([np.concatenate(list(ShardSampler(1001, 100, r, 4))) for r in range(4)])
    assert sorted(got.tolist()) == list(range(1001))
