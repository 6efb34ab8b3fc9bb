"""imbalance gan_oversample: oversample_minority's repeats, a share of them generated faces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clearface.data.datamodule import SYNTHETIC, BatchGather, epoch_indices
from clearface.errors import ClearfaceError
from clearface.gan.nets import Generator
from clearface.gan.sampling import fill_synthetic, require_generator

LABELS = np.array([0] * 10 + [1] * 90, np.int8)


def test_ratio_zero_is_oversample_minority_and_real_minority_always_comes_once():
    same = [epoch_indices(LABELS, s, np.random.default_rng(3)) for s in ("oversample_minority", "gan_oversample")]
    assert np.array_equal(*same)
    idx = epoch_indices(LABELS, "gan_oversample", np.random.default_rng(3), gan_ratio=0.5)
    assert len(idx) == 180 and (idx == SYNTHETIC).sum() == 40  # half of the 80 repeats
    assert set(range(10)) <= set(idx.tolist())  # every real minority image once per epoch
    assert (LABELS[idx[idx >= 0]] == 1).sum() == 90


def test_synthetic_slots_get_generated_faces_labelled_minority():
    images = torch.zeros(100, 3, 64, 64, dtype=torch.uint8)
    gather = BatchGather(images, torch.from_numpy(LABELS.astype(np.float32)))
    x, y, idx = gather[np.array([50, SYNTHETIC, 60, SYNTHETIC])]
    torch.manual_seed(0)
    gx, gy = fill_synthetic((Generator(8, 4).eval(), 0), x, y, idx)
    assert gy.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert gx[[1, 3]].float().std() > 0 and not gx[[0, 2]].any()  # only the slots changed


def test_gan_oversample_without_a_generator_is_one_clear_line():
    with pytest.raises(ClearfaceError, match="needs a generator file: give --gan.generator"):
        require_generator({"imbalance": "gan_oversample", "gan": {"generator": None, "ratio": 0.5}})
