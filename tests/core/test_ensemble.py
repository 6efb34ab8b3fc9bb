import json

import numpy as np
import pytest
import torch

from clearface import metrics
from clearface.config import resolve
from clearface.ensemble import merge_runs
from clearface.errors import ClearfaceError
from clearface.inference import build_scorer, load_model_file, make_model_file, save_model_file
from clearface.models import IMAGENET_MEAN, IMAGENET_STD, get_model


def _fake_run(d, seed, val_names, val_y, val_s, test_s=None):
    d.mkdir()
    torch.manual_seed(seed)
    net = get_model("cfnet_tiny")
    member = {"model": "cfnet_tiny", "model_kwargs": {}, "build_kwargs": {}, "state_dict": net.state_dict()}
    blob = make_model_file([member], IMAGENET_MEAN, IMAGENET_STD, "flip", 0.5, "min_hter", "val", {},
                           resolve(overrides={"model": "cfnet_tiny"}))
    save_model_file(blob, d / "model.pt")
    (d / "val_scores.csv").write_text("name,label,score,predicted\n" + "".join(
        f"{n},{y},{s},0\n" for n, y, s in zip(val_names, val_y, val_s)))
    if test_s is not None:
        (d / "test_scores.csv").write_text("name,label,score,predicted\n" + "".join(
            f"t{i},{y},{s},0\n" for i, (y, s) in enumerate(zip(val_y, test_s))))
    return d


def test_merge_recalibrates_on_mean_scores(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"{i}.jpg" for i in range(200)]
    y = (rng.random(200) < 0.85).astype(int)
    a = np.clip(0.6 * y + rng.normal(0.2, 0.2, 200), 0, 1)
    b = np.clip(0.6 * y + rng.normal(0.2, 0.2, 200), 0, 1)
    r1 = _fake_run(tmp_path / "r1", 0, names, y, a, test_s=a)
    r2 = _fake_run(tmp_path / "r2", 1, names, y, b, test_s=b)
    out = tmp_path / "ens.pt"
    res = merge_runs([r1, r2], out)
    assert res["threshold"] == pytest.approx(metrics.min_hter_threshold((a + b) / 2, y))
    blob = load_model_file(out)
    assert len(blob["members"]) == 2 and blob["threshold"] == pytest.approx(res["threshold"])
    assert "test" in res and json.loads(out.with_suffix(".json").read_text())["val"]["n"] == 200
    # the merged model's score is the mean of the members' scores
    x = torch.rand(3, 3, 64, 64)
    s_ens = build_scorer(blob)(x)
    s_each = [build_scorer(load_model_file(r / "model.pt"))(x) for r in (r1, r2)]
    assert torch.allclose(s_ens, (s_each[0] + s_each[1]) / 2, atol=1e-6)


def test_merge_refuses_different_validation_sets(tmp_path):
    y = np.array([0, 1, 1, 0])
    r1 = _fake_run(tmp_path / "r1", 0, ["a", "b", "c", "d"], y, [0.1, 0.9, 0.8, 0.2])
    r2 = _fake_run(tmp_path / "r2", 1, ["a", "b", "c", "e"], y, [0.1, 0.9, 0.8, 0.2])
    with pytest.raises(ClearfaceError, match="split_seed"):
        merge_runs([r1, r2], tmp_path / "e.pt")


def test_half_precision_file_is_smaller_and_scores_alike(tmp_path):
    y = np.array([0, 1, 1, 0, 1, 1])
    s = [0.1, 0.9, 0.8, 0.2, 0.7, 0.6]
    r1 = _fake_run(tmp_path / "r1", 0, list("abcdef"), y, s)
    r2 = _fake_run(tmp_path / "r2", 1, list("abcdef"), y, s)
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    merge_runs([r1, r2], full)
    res = merge_runs([r1, r2], half, half=True)
    assert res["weights_dtype"] == "float16"
    assert half.stat().st_size < 0.6 * full.stat().st_size
    blob = load_model_file(half)
    assert blob["weights_dtype"] == "float16"
    assert all(v.dtype != torch.float32 for m in blob["members"] for v in m["state_dict"].values())
    scorer = build_scorer(blob)
    assert all(p.dtype == torch.float32 for p in scorer.parameters())  # computes in float32
    x = torch.rand(4, 3, 64, 64)
    diff = (scorer(x) - build_scorer(load_model_file(full))(x)).abs().max()
    assert 0 < diff < 5e-3
