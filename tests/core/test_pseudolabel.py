"""Pseudo-labels: per-class cuts chosen on validation, a checked CSV, training-only use."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearface.settings import resolve
from clearface.data import load_images
from clearface.errors import ClearfaceError
from clearface.pseudolabel import call, confident_cuts, pseudolabel, read_pseudo_labels
from clearface.train.run import _pseudo_labelled
from conftest import real_slice, write_zip


def _prefix_precisions(s, y, cls, ascending):
    order = np.argsort(s if ascending else -s, kind="stable")
    ss, hit = s[order], y[order] == cls
    return {float(ss[k]): hit[:k + 1].mean() for k in range(len(ss)) if k == len(ss) - 1 or ss[k + 1] != ss[k]}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 1)), min_size=2, max_size=60),
       st.floats(0.5, 1.0), st.floats(0.5, 1.0))
def test_cuts_meet_the_targets_and_are_the_loosest(pairs, p0, p1):
    s = np.array([a / 20 for a, _ in pairs])
    y = np.array([b for _, b in pairs])
    try:
        below, above = confident_cuts(s, y, p0, p1)
    except ClearfaceError as exc:
        assert "overlap" in str(exc)
        return
    c = call(s, below, above)
    if (c == 0).any():
        assert (y[c == 0] == 0).mean() >= p0
    if (c == 1).any():
        assert (y[c == 1] == 1).mean() >= p1
    # no looser cut (a larger class-0 / smaller class-1 cut) reaches the target
    assert all(prec < p0 for t, prec in _prefix_precisions(s, y, 0, True).items() if t > below)
    assert all(prec < p1 for t, prec in _prefix_precisions(s, y, 1, False).items() if t < above)


def test_cuts_on_a_clear_case():
    s = np.array([0.01, 0.02, 0.03, 0.5, 0.6, 0.97, 0.98, 0.99])
    y = np.array([0, 0, 1, 0, 1, 1, 1, 1])
    below, above = confident_cuts(s, y, 1.0, 1.0)
    assert (below, above) == (0.02, 0.6)
    assert call(s, below, above).tolist() == [0, 0, -1, -1, 1, 1, 1, 1]
    with pytest.raises(ClearfaceError, match="precision0"):
        confident_cuts(s, y, 0.0, 0.9)
    with pytest.raises(ClearfaceError, match="overlap"):
        confident_cuts(s, y, 0.5, 0.5)


def test_pseudo_label_file_is_checked_line_by_line(tmp_path):
    names = ["v/000001.jpg", "v/000002.jpg"]
    f = tmp_path / "p.csv"
    f.write_text("name,score,label\nv/000002.jpg,0.9,1\nv/000001.jpg,0.1,0\n")
    pos, lab, score = read_pseudo_labels(f, names)
    assert pos.tolist() == [1, 0] and lab.tolist() == [1, 0] and score.tolist() == [0.9, 0.1]
    f.write_text("name,label\nv/000002.jpg,1\n")
    assert read_pseudo_labels(f, names)[2] is None
    f.write_text("name,score,label\nv/000002.jpg,1.5,1\n")
    with pytest.raises(ClearfaceError, match=r"p.csv:2: score '1.5'"):
        read_pseudo_labels(f, names)
    f.write_text("name,score,label\nv/000002.jpg,0.9,1\nv/000009.jpg,0.1,0\n")
    with pytest.raises(ClearfaceError, match=r"p.csv:3: .*000009"):
        read_pseudo_labels(f, names)
    f.write_text("name,score,label\nv/000002.jpg,0.9,yes\n")
    with pytest.raises(ClearfaceError, match=r"p.csv:2: label 'yes'"):
        read_pseudo_labels(f, names)
    f.write_text("file,label\n")
    with pytest.raises(ClearfaceError, match="'name'"):
        read_pseudo_labels(f, names)


def test_pseudolabel_end_to_end_and_training_use(small_run, tiny_model_file, tmp_path):
    zpath, lpath, run, s, y, parts = small_run
    blobs, _ = real_slice(40, start=300)
    # two of the "unlabelled" images are copies of held-out ones: they must never be trained on
    test_pos = np.flatnonzero(parts == "test")[:2]
    train_blobs, _ = real_slice(300)
    unl = write_zip(tmp_path / "unl.zip", blobs + [train_blobs[i] for i in test_pos], "val_img")
    out = tmp_path / "pseudo.csv"
    # a random tiny teacher: perfect-precision cuts can never overlap; the point is the mechanics
    r = pseudolabel(tiny_model_file, run, zpath, lpath, unl, out, precision0=1.0, precision1=1.0)
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["below"] == pytest.approx(r["below"]) and summary["unlabelled"]["images"] == 42
    rows = out.read_text().splitlines()
    assert rows[0] == "name,score,label" and len(rows) - 1 == r["unlabelled"]["class0"] + r["unlabelled"]["class1"]
    for row in rows[1:]:
        _, score, label = row.split(",")
        assert (label == "0" and float(score) <= r["below"]) or (label == "1" and float(score) >= r["above"])

    # training use: the copies of held-out images are dropped, everything else is kept
    every = tmp_path / "every.csv"
    names = load_images(unl).names
    every.write_text("name,label\n" + "".join(f"{n},{i % 2}\n" for i, n in enumerate(names)))
    cfg = resolve(overrides={"pseudo_data": str(unl), "pseudo_labels": str(every)})
    images, labels, targets = _pseudo_labelled(cfg, s.hashes, parts)
    assert len(images) == len(labels) == 40 and images.shape[1:] == (3, 64, 64)
    assert np.array_equal(targets, labels.astype(np.float32))  # no distillation: the targets are the labels
    with pytest.raises(ClearfaceError, match="together"):
        _pseudo_labelled(resolve(overrides={"pseudo_data": str(unl)}), s.hashes, parts)


def test_pseudolabel_engines_agree_and_say_which_ran(small_run, tiny_model_file, tmp_path):
    """``--engine``: onnxruntime (the default) and PyTorch give the same cuts and calls; the summary names
    the engine that scored."""
    zpath, lpath, run, *_ = small_run
    blobs, _ = real_slice(40, start=300)
    unl = write_zip(tmp_path / "unl.zip", blobs, "val_img")
    got = {}
    for engine in ("torch", "auto"):
        out = tmp_path / f"{engine}.csv"
        r = pseudolabel(tiny_model_file, run, zpath, lpath, unl, out, precision0=1.0, precision1=0.92, engine=engine)
        got[engine] = (r, [row.split(",") for row in out.read_text().splitlines()[1:]])
    assert got["torch"][0]["engine"] == "torch" and got["auto"][0]["engine"] == "onnx"
    assert got["torch"][0]["below"] == pytest.approx(got["auto"][0]["below"], abs=1e-4)
    assert got["torch"][0]["above"] == pytest.approx(got["auto"][0]["above"], abs=1e-4)
    t, o = got["torch"][1], got["auto"][1]
    assert t  # some calls to compare
    assert [(n, lab) for n, _, lab in t] == [(n, lab) for n, _, lab in o]
    assert np.allclose([float(s) for _, s, _ in t], [float(s) for _, s, _ in o], atol=1e-4)
