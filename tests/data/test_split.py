import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearface.data.split import fold_parts, make_split
from clearface.errors import ClearfaceError


def _data(n=2000, seed=0, dup_every=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.88).astype(np.int8)
    h = np.arange(n, dtype=np.uint64)
    if dup_every:
        h[::dup_every] = 7  # many byte-identical images
    return y, h


def test_stratified_and_seeded():
    y, h = _data()
    a = make_split(y, h, 0.1, holdout=0, seed=3)
    b = make_split(y, h, 0.1, holdout=0, seed=3)
    c = make_split(y, h, 0.1, holdout=0, seed=4)
    assert (a == b).all() and not (a == c).all()
    val = a == "val"
    assert abs(val.mean() - 0.1) < 0.01
    assert abs(y[val].mean() - y.mean()) < 0.02


def test_holdout_fixed_across_training_seeds():
    y, h = _data()
    a = make_split(y, h, 0.1, holdout=300, seed=0)
    b = make_split(y, h, 0.1, holdout=300, seed=9)
    assert ((a == "test") == (b == "test")).all()
    assert abs((a == "test").sum() - 300) <= 2


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 9), st.sampled_from([1, 3, 5]))
def test_duplicates_never_cross_sides(seed, dup_every, folds):
    y, h = _data(600, seed, dup_every)
    parts = make_split(y, h, 0.2, holdout=100, seed=seed, folds=folds)
    for value in np.unique(h):
        assert len(set(parts[h == value])) == 1


def test_kfold_covers_everything_once():
    y, h = _data()
    parts = make_split(y, h, holdout=200, folds=5)
    folds = [fold_parts(parts, k) for k in range(5)]
    val_count = sum((f == "val").astype(int) for f in folds)
    assert ((val_count == 1) | (parts == "test")).all()
    assert (val_count[parts == "test"] == 0).all()


def test_bad_fractions():
    y, h = _data(50)
    with pytest.raises(ClearfaceError):
        make_split(y, h, 1.5)
    with pytest.raises(ClearfaceError):
        make_split(y, h, 0.1, holdout=50)
