"""The GAN: a tiny one trains and samples on CPU, sees only the split's training part, and resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clearface.data.split import TRAIN
from clearface.errors import ClearfaceError
from clearface.gan.run import train_gan
from clearface.gan.sampling import (build_generator, check_not_trained_on, draw, load_generator_file,
                                    trained_on_hashes)

TINY = {"z_dim": 8, "ngf": 4, "batch_size": 16, "num_threads": 1}


@pytest.fixture(scope="module")
def gan_run(real_small, tmp_path_factory):
    """A split of ``real_small`` (30 % val, 80 held out) and a tiny GAN trained 2 epochs on its train part."""
    from clearface.data import load_labelled
    from clearface.data.split import make_split
    from clearface.rundir import RunDir
    zpath, lpath, _ = real_small
    s, y = load_labelled(zpath, lpath)
    parts = make_split(y, s.hashes, val_fraction=0.3, holdout=80, seed=0)
    base = tmp_path_factory.mktemp("gan_run")
    RunDir(base / "run").create().write_split(s.names, y, parts)
    path = train_gan(base / "run", zpath, lpath, base / "gan", epochs=2, **TINY)
    return base, zpath, lpath, s, parts, path


def test_tiny_gan_trains_and_samples_the_right_shape(gan_run):
    path = gan_run[-1]
    blob = load_generator_file(path)
    assert blob["generates"] == 0 and blob["epochs_done"] == 2
    x = draw(build_generator(blob), 5, cls=0, seed=1)
    assert x.shape == (5, 3, 64, 64) and x.dtype == torch.uint8
    assert torch.equal(x, draw(build_generator(blob), 5, cls=0, seed=1))  # seeded noise: same faces


def test_generator_saw_only_the_training_part(gan_run):
    *_, s, parts, path = gan_run
    blob = load_generator_file(path)
    seen = trained_on_hashes(blob)
    assert set(seen.tolist()) == set(s.hashes[parts == TRAIN].tolist())
    assert not np.isin(s.hashes[parts != TRAIN], seen).any()  # no validation or held-out image
    check_not_trained_on(blob, s.hashes[parts != TRAIN], path)  # passes
    with pytest.raises(ClearfaceError, match="trained on 3 of this run's validation/held-out"):
        check_not_trained_on(blob, s.hashes[parts == TRAIN][:3], path)


def test_resumed_gan_matches_an_uninterrupted_one(gan_run, tmp_path):
    base, zpath, lpath, *_, straight = gan_run
    train_gan(base / "run", zpath, lpath, tmp_path / "b", epochs=1, **TINY)
    resumed = load_generator_file(train_gan(base / "run", zpath, lpath, tmp_path / "b", epochs=2, resume=True, **TINY))
    assert resumed["epochs_done"] == 2
    for k, v in load_generator_file(straight)["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), k


def test_a_foreign_file_is_refused_in_one_line(tmp_path):
    bad = tmp_path / "g.pt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(ClearfaceError, match="not a clearface generator file"):
        load_generator_file(bad)
    with pytest.raises(ClearfaceError, match="no such generator file"):
        load_generator_file(tmp_path / "missing.pt")
