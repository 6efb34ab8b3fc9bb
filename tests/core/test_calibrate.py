"""Re-choosing tau after an inference change: on the run's validation part only."""

import json

import numpy as np
import pytest

from clearface import metrics
from clearface.calibrate import recalibrate
from clearface.data.split import save_split
from clearface.errors import ClearfaceError
from clearface.inference import build_scorer, load_model_file, score_array


def test_tau_is_chosen_on_validation_with_the_new_tta(small_run, tiny_model_file, tmp_path):
    zpath, lpath, run, s, y, parts = small_run
    out = tmp_path / "notta.pt"
    res = recalibrate(tiny_model_file, run, zpath, lpath, out, tta="none")
    blob = load_model_file(out)
    assert blob["tta"] == "none" and load_model_file(tiny_model_file)["tta"] == "flip"
    scorer = build_scorer(blob)
    val, test = parts == "val", parts == "test"
    sv = score_array(scorer, s.images[val])
    assert res["threshold"] == pytest.approx(metrics.min_hter_threshold(sv, y[val]))
    assert blob["threshold"] == pytest.approx(res["threshold"])
    st = score_array(scorer, s.images[test])
    assert res["test"]["hter"] == pytest.approx(metrics.hter(st, y[test], res["threshold"]))
    assert res["val"]["n"] == int(val.sum()) and res["test"]["n"] == 80
    assert json.loads(out.with_suffix(".json").read_text())["tta"] == "none"


def test_wrong_data_or_kfold_run_is_refused(small_run, tiny_model_file, tmp_path):
    zpath, lpath, run, s, y, parts = small_run
    bad = tmp_path / "bad"
    bad.mkdir()
    save_split(bad / "split.csv", s.names[:-1] + ["train_img/999999.jpg"], y, parts)
    with pytest.raises(ClearfaceError, match="999999"):
        recalibrate(tiny_model_file, bad, zpath, lpath, tmp_path / "x.pt")
    save_split(bad / "split.csv", s.names, y, np.where(parts == "val", "fold0", parts))
    with pytest.raises(ClearfaceError, match="k-fold"):
        recalibrate(tiny_model_file, bad, zpath, lpath, tmp_path / "x.pt")
    with pytest.raises(ClearfaceError, match="split.csv"):
        recalibrate(tiny_model_file, tmp_path, zpath, lpath, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
