"""Distillation targets: the mix rule, the teacher CSV's checks, and which images a teacher score reaches."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearface.data import load_images
from clearface.errors import ClearfaceError
from clearface.settings import resolve
from clearface.train.targets import mix, read_teacher_scores, temper
from conftest import real_slice, write_zip

unit = st.floats(0.001, 0.999)


@given(st.lists(unit, min_size=1, max_size=20), st.floats(0.1, 10))
@settings(max_examples=60, deadline=None)
def test_temper_keeps_order_and_side_of_one_half(scores, t):
    s = np.array(scores)
    out = temper(s, t)
    assert np.all((out >= 0) & (out <= 1))
    assert np.all(np.diff(out[np.argsort(s)]) >= 0)  # monotone: the teacher's ranking is kept
    assert np.all((out > 0.5) == (s > 0.5)) and np.all((out < 0.5) == (s < 0.5))
    if t > 1:  # softer: never further from 1/2
        assert np.all(np.abs(out - 0.5) <= np.abs(s - 0.5) + 1e-12)


def test_mix_ends_are_labels_and_teacher():
    y, s = np.array([0, 1, 1, 0]), np.array([0.2, 0.9, 0.4, 0.7])
    assert np.array_equal(mix(y, s, 1.0, 3.0), y.astype(np.float32))
    np.testing.assert_allclose(mix(y, s, 0.0, 1.0), s, atol=1e-6)
    np.testing.assert_allclose(mix(y, s, 0.25, 1.0), 0.25 * y + 0.75 * s, atol=1e-6)
    assert temper(np.array([0.9]), 1e6)[0] == pytest.approx(0.5, abs=1e-5)


def test_teacher_csv_is_checked_and_only_needed_rows_are_kept(tmp_path):
    names = ["t/000001.jpg", "t/000002.jpg", "t/000003.jpg"]
    needed = np.array([True, False, True])
    f = tmp_path / "teacher.csv"
    f.write_text("name,score,label\nt/000003.jpg,0.25,0\nt/000002.jpg,0.75,1\nt/000001.jpg,0.5,1\n")
    out = read_teacher_scores(f, names, needed)
    assert out[0] == 0.5 and out[2] == 0.25 and np.isnan(out[1])  # image 2's score is never handed on
    for text, match in [("name,score\nt/000001.jpg,0.5\n", r"no score for 1 training images .*000003"),
                        ("name,score\nt/000009.jpg,0.5\n", r"teacher.csv:2: image 't/000009.jpg'"),
                        ("name,score\nt/000001.jpg,nan\n", r"teacher.csv:2: score 'nan'"),
                        ("name,score\nt/000001.jpg,0.5\nt/000002.jpg,\n", r"teacher.csv:3: score ''"),
                        ("file,p\n", "'name' and 'score'")]:
        f.write_text(text)
        with pytest.raises(ClearfaceError, match=match):
            read_teacher_scores(f, names, needed)
    f.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ClearfaceError):
        read_teacher_scores(f, names, needed)
    with pytest.raises(ClearfaceError, match="no such teacher score file"):
        read_teacher_scores(tmp_path / "missing.csv", names, needed)


@pytest.mark.slow
def test_training_targets_mix_teacher_scores_of_training_images_only(small_run, tmp_path, datamodule_inputs):
    """A real (one short epoch) run: the data module receives label/teacher mixes for the training part
    and the pseudo-labelled images, in that order; validation keeps hard labels."""
    from clearface.train.run import train

    zpath, lpath, run, s, y, parts = small_run
    rng = np.random.default_rng(0)
    teacher = rng.uniform(0.01, 0.99, len(y))
    scores_csv = tmp_path / "teacher.csv"
    scores_csv.write_text("name,score,label\n" + "".join(f"{n},{p:.6f},{int(p > 0.5)}\n"
                                                          for n, p in zip(s.names, teacher)))
    blobs, _ = real_slice(10, start=400)
    unl = write_zip(tmp_path / "unl.zip", blobs, "val_img")
    unl_scores = rng.uniform(0.01, 0.99, 10)
    pseudo = tmp_path / "pseudo.csv"
    pseudo.write_text("name,score,label\n" + "".join(f"{n},{p:.6f},{int(p > 0.3)}\n"
                                                     for n, p in zip(load_images(unl).names, unl_scores)))
    seen = datamodule_inputs
    alpha, temperature = 0.3, 2.0
    cfg = resolve(overrides={"model": "cfnet_tiny", "epochs": 1, "holdout": 80, "val_fraction": 0.3,
                             "progress_bar": False, "track_holdout": False, "tta": "none",
                             "pseudo_data": str(unl), "pseudo_labels": str(pseudo),
                             "distill": {"scores": str(scores_csv), "alpha": alpha, "temperature": temperature}})
    train(zpath, lpath, tmp_path / "out", cfg)
    from clearface.rundir import RunDir
    tr = seen["train_idx"]
    assert set(RunDir(tmp_path / "out").read_split()[tr]) == {"train"}
    expected = np.concatenate([mix(y[tr], teacher[tr], alpha, temperature),
                               mix((unl_scores > 0.3).astype(int), unl_scores, alpha, temperature)])
    np.testing.assert_allclose(seen["targets"], expected, atol=2e-6)
    assert np.array_equal(seen["val_targets"], y[seen["val_idx"]].astype(np.float32))

    # without the teacher file, distillation is one clear error before any training
    cfg["distill"] = {"scores": None, "alpha": 0.5, "temperature": 1.0}
    with pytest.raises(ClearfaceError, match="needs --distill.scores"):
        train(zpath, lpath, tmp_path / "out2", cfg)
