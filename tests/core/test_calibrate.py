"""Re-choosing tau after an inference change: on the run's validation part only."""

import json

import numpy as np
import pytest

from clearface import calibration, metrics
from clearface.calibrate import calibrate
from clearface.errors import ClearfaceError
from clearface.engines import TorchEngine
from clearface.modelfile import load_model_file
from clearface.rundir import RunDir


def test_tau_is_chosen_on_validation_with_the_new_tta(small_run, tiny_model_file, tmp_path):
    zpath, lpath, run, s, y, parts = small_run
    out = tmp_path / "notta.pt"
    res = calibrate(tiny_model_file, run, zpath, lpath, out, tta="none")
    blob = load_model_file(out)
    assert blob["tta"] == "none" and load_model_file(tiny_model_file)["tta"] == "flip"
    engine = TorchEngine(blob)
    val, test = parts == "val", parts == "test"
    sv = engine.score(s.images[val])
    assert res["threshold"] == pytest.approx(metrics.min_hter_threshold(sv, y[val]))
    assert blob["threshold"] == pytest.approx(res["threshold"])
    st = engine.score(s.images[test])
    assert res["test"]["hter"] == pytest.approx(metrics.hter(st, y[test], res["threshold"]))
    assert res["val"]["n"] == int(val.sum()) and res["test"]["n"] == 80
    assert json.loads(out.with_suffix(".json").read_text())["tta"] == "none"


def test_wrong_data_or_kfold_run_is_refused(small_run, tiny_model_file, tmp_path):
    zpath, lpath, run, s, y, parts = small_run
    bad = tmp_path / "bad"
    bad.mkdir()
    RunDir(bad).write_split(s.names[:-1] + ["train_img/999999.jpg"], y, parts)
    with pytest.raises(ClearfaceError, match="999999"):
        calibrate(tiny_model_file, bad, zpath, lpath, tmp_path / "x.pt")
    RunDir(bad).write_split(s.names, y, np.where(parts == "val", "fold0", parts))
    with pytest.raises(ClearfaceError, match="k-fold"):
        calibrate(tiny_model_file, bad, zpath, lpath, tmp_path / "x.pt")
    with pytest.raises(ClearfaceError, match="split.csv"):
        calibrate(tiny_model_file, tmp_path, zpath, lpath, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_rule_and_half_are_chosen_on_the_stored_weights(small_run, tiny_model_file, tmp_path):
    zpath, lpath, run, s, y, parts = small_run
    out = tmp_path / "half.pt"
    res = calibrate(tiny_model_file, run, zpath, lpath, out, rule="far_at:0.2", half=True)
    blob = load_model_file(out)
    assert blob["weights_dtype"] == "float16" and blob["threshold_method"] == "far_at:0.2"
    assert blob["config"]["threshold_method"] == "far_at:0.2" and blob["config"]["tta"] == blob["tta"]
    val = parts == "val"
    sv = TorchEngine(blob).score(s.images[val])  # the float16 weights' own scores
    far, _ = metrics.far_frr(sv, y[val], res["threshold"])
    assert far <= 0.2 and res["val"]["far"] == far
    assert res["threshold"] == pytest.approx(calibration.fit_threshold(sv, y[val], "far_at:0.2"))


def test_preprocess_names_the_step_that_reads_the_images(small_run, tiny_model_file, tmp_path):
    """calibrate reads the images with --preprocess when given (crop or resize), else the model's step."""
    zpath, lpath, run, s, y, parts = small_run
    as_stored = calibrate(tiny_model_file, run, zpath, lpath, tmp_path / "a.pt")
    resized = calibrate(tiny_model_file, run, zpath, lpath, tmp_path / "b.pt", preprocess="resize")
    assert resized["threshold"] == pytest.approx(as_stored["threshold"])  # 64x64 crops: resize keeps them
    with pytest.raises(ClearfaceError, match="detect"):
        calibrate(tiny_model_file, run, zpath, lpath, tmp_path / "c.pt", preprocess="detect")
    assert not (tmp_path / "c.pt").exists()
