"""RunDir: the run folder's files, written and read back by one class."""

import numpy as np
import pytest

from clearface.data.split import make_split
from clearface.errors import ClearfaceError
from clearface.rundir import RunDir, read_score_csv


def test_split_roundtrip_and_checks(tmp_path):
    rng = np.random.default_rng(0)
    y = (rng.random(50) < 0.7).astype(int)
    parts = make_split(y, rng.integers(0, 2**63, 50, dtype=np.uint64), 0.2)
    names = [f"{i}.jpg" for i in range(50)]
    run = RunDir(tmp_path)
    run.write_split(names, y, parts)
    assert (run.read_split() == parts).all()
    assert (run.read_split(names) == parts).all()
    assert (run.split_indices("val") == np.flatnonzero(parts == "val")).all()
    with pytest.raises(ClearfaceError, match="line 3 names '1.jpg'"):
        run.read_split(names[:1] + ["x.jpg"] + names[2:])
    with pytest.raises(ClearfaceError, match="49 images"):
        run.read_split(names[:-1])
    run.write_split(names, y, np.where(parts == "val", "fold0", parts))
    with pytest.raises(ClearfaceError, match="k-fold"):
        run.validation_split(names)
    with pytest.raises(ClearfaceError, match="split.csv"):
        RunDir(tmp_path / "none").read_split()


def test_scores_roundtrip(tmp_path):
    run = RunDir(tmp_path)
    assert not run.has_scores("val")
    run.write_scores("val", ["a", "b", "c"], [0, 1, 1], np.array([0.2, 0.7, 0.4]), 0.5)
    names, y, s = run.read_scores("val")
    assert names == ["a", "b", "c"] and y.tolist() == [0, 1, 1] and s.tolist() == [0.2, 0.7, 0.4]
    assert run.scores_path("val").read_text().splitlines()[2] == "b,1,0.700000,1"
    with pytest.raises(ClearfaceError, match="test_scores.csv"):
        run.read_scores("test")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,score\na,0.1\n")
    with pytest.raises(ClearfaceError, match="name,label,score"):
        read_score_csv(bad)


def test_summary_and_metrics(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(ClearfaceError, match="summary.csv"):
        run.read_summary()
    run.summary_path.write_text("epoch,train_loss,val_loss,val_hter,holdout_hter\n1,0.5,0.4,0.2,\n")
    summary = run.read_summary()
    assert summary["val_hter"].tolist() == [0.2] and np.isnan(summary["holdout_hter"][0])
    run.write_metrics({"threshold": 0.4})
    assert run.read_metrics() == {"threshold": 0.4}
    assert run.fold(2).path == tmp_path / "fold2" and run.model_path.name == "model.pt"
