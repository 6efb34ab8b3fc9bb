"""Suspect labels from `clearface audit`: the CSV's checks, the targets they give, and that a real run
drops them (or trains on their out-of-fold score) in the training part only."""

import numpy as np
import pytest

from clearface.errors import ClearfaceError
from clearface.settings import resolve
from clearface.train.targets import mix, read_suspects, training_targets

NAMES = ["t/000001.jpg", "t/000002.jpg", "t/000003.jpg", "t/000004.jpg"]
LABELS = np.array([1, 0, 1, 1])


def _cfg(action, alpha=1.0):
    return {"suspects": {"file": "x.csv", "action": action}, "distill": {"alpha": alpha, "temperature": 1.0}}


def test_suspects_csv_is_checked_and_only_trainable_rows_are_kept(tmp_path):
    f = tmp_path / "suspects.csv"
    f.write_text("rank,name,label,score,self_confidence,suggested_label\n"
                 "1,t/000003.jpg,1,0.020000,0.020000,0\n2,t/000002.jpg,0,0.950000,0.050000,1\n"
                 "3,t/000004.jpg,1,0.100000,0.100000,0\n")
    trainable = np.array([True, True, True, False])  # image 4 is held out: its flag is never handed on
    out = read_suspects(f, NAMES, LABELS, trainable)
    assert np.isnan(out[0]) and out[1] == 0.95 and out[2] == 0.02 and np.isnan(out[3])
    for text, match in [("name,label,score\nt/000001.jpg,0,0.1\n", r"suspects.csv:2: label '0' of t/000001.jpg .*\(1\)"),
                        ("name,label,score\nt/000001.jpg,yes,0.1\n", r"suspects.csv:2: label 'yes'"),
                        ("name,label,score\nt/000009.jpg,1,0.1\n", r"suspects.csv:2: image 't/000009.jpg'"),
                        ("name,label,score\nt/000001.jpg,1,1.5\n", r"suspects.csv:2: score '1.5'"),
                        ("name,score\nt/000001.jpg,0.5\n", "'name' and 'label' and 'score'")]:
        f.write_text(text)
        with pytest.raises(ClearfaceError, match=match):
            read_suspects(f, NAMES, LABELS, trainable)
    with pytest.raises(ClearfaceError, match="no such suspects file"):
        read_suspects(tmp_path / "missing.csv", NAMES, LABELS, trainable)


def test_soft_action_replaces_flagged_targets_only_and_wins_over_the_teacher():
    suspects = np.array([np.nan, 0.9, 0.05, np.nan])
    assert training_targets(LABELS, None, None, _cfg("keep")) is None
    assert training_targets(LABELS, None, suspects, _cfg("drop")) is None  # dropping is done on the indices
    np.testing.assert_allclose(training_targets(LABELS, None, suspects, _cfg("soft")), [1, 0.9, 0.05, 1], atol=1e-7)
    teacher = np.array([0.8, 0.3, 0.6, 0.7])
    expected = mix(LABELS, teacher, 0.5, 1.0)
    expected[1:3] = [0.9, 0.05]
    np.testing.assert_allclose(training_targets(LABELS, teacher, suspects, _cfg("soft", 0.5)), expected, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("action", ["drop", "soft"])
def test_run_drops_or_softens_flagged_training_labels_only(small_run, tmp_path, datamodule_inputs, action):
    """A real one-epoch run: flagged training images are left out (drop) or get their out-of-fold score as
    target (soft); flagged validation images keep their place and hard label."""
    from clearface.rundir import RunDir
    from clearface.train.run import train

    zpath, lpath, _, s, y, parts = small_run
    seen = datamodule_inputs
    cfg = resolve(overrides={"model": "cfnet_tiny", "epochs": 1, "holdout": 80, "val_fraction": 0.3,
                             "progress_bar": False, "track_holdout": False, "tta": "none"})
    out = tmp_path / "out"
    # the run's own split (the same settings as small_run's) decides which flags are training images
    rng = np.random.default_rng(1)
    flagged = rng.choice(len(y), 40, replace=False)
    scores = rng.uniform(0.01, 0.99, 40)
    f = tmp_path / "suspects.csv"
    f.write_text("rank,name,label,score\n" + "".join(f"{r},{s.names[i]},{y[i]},{p:.6f}\n"
                                                     for r, (i, p) in enumerate(zip(flagged, scores), 1)))
    cfg["suspects"] = {"file": str(f), "action": action}
    train(zpath, lpath, out, cfg)
    run_parts = RunDir(out).read_split()
    train_all = np.flatnonzero(run_parts == "train")
    flag_train = np.intersect1d(flagged, train_all)
    assert 0 < flag_train.size < 40 and np.isin(flagged, np.flatnonzero(run_parts == "val")).any()
    tr = seen["train_idx"]
    score_of = dict(zip(flagged.tolist(), scores))
    if action == "drop":
        assert np.array_equal(tr, np.setdiff1d(train_all, flag_train))
        assert np.array_equal(seen["targets"], y[tr].astype(np.float32))
    else:
        assert np.array_equal(tr, train_all)
        expected = np.array([score_of.get(i, y[i]) for i in tr.tolist()], np.float32)
        np.testing.assert_allclose(seen["targets"], expected, atol=1e-6)
    assert np.array_equal(seen["val_idx"], np.flatnonzero(run_parts == "val"))  # flagged or not, all validate
    assert np.array_equal(seen["val_targets"], y[seen["val_idx"]].astype(np.float32))
    assert "flagged training labels" in (out / "train.log").read_text()


def test_an_action_without_a_suspects_file_is_one_clear_error(small_run, tmp_path):
    from clearface.train.run import train
    zpath, lpath, *_ = small_run
    cfg = resolve(overrides={"model": "cfnet_tiny", "epochs": 1, "holdout": 80, "progress_bar": False,
                             "suspects": {"action": "drop"}})
    with pytest.raises(ClearfaceError, match="--suspects.action drop needs --suspects.file"):
        train(zpath, lpath, tmp_path / "out", cfg)
