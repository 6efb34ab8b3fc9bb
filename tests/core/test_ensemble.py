import json

import numpy as np
import pytest
import torch

from clearface import metrics
from clearface.settings import resolve
from clearface.calibration import fit_threshold
from clearface.ensemble import ensemble, mean_score, member_weights
from clearface.errors import ClearfaceError
from clearface.engines import TorchEngine, build_scorer
from clearface.modelfile import load_model_file, make_model_file, save_model_file
from clearface.rundir import RunDir
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
    res = ensemble([r1, r2], out)
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
    with pytest.raises(ClearfaceError, match="split-seed"):
        ensemble([r1, r2], tmp_path / "e.pt")


def _real_run(d, seed, small_run):
    """A finished run on the real slice: model file, split and its own float32 score files."""
    zpath, lpath, _, s, y, parts = small_run
    d.mkdir()
    torch.manual_seed(seed)
    member = {"model": "cfnet_tiny", "model_kwargs": {}, "build_kwargs": {},
              "state_dict": get_model("cfnet_tiny").state_dict()}
    blob = make_model_file([member], IMAGENET_MEAN, IMAGENET_STD, "flip", 0.5, "min_hter", "val", {},
                           resolve(overrides={"model": "cfnet_tiny"}))
    save_model_file(blob, d / "model.pt")
    run = RunDir(d)
    run.write_split(s.names, y, parts)
    engine = TorchEngine(blob)
    for part in ("val", "test"):
        idx = np.flatnonzero(parts == part)
        run.write_scores(part, [s.names[i] for i in idx], y[idx], engine.score(s.images[idx]), 0.5)
    return d


def test_half_chooses_tau_on_the_float16_weights_it_stores(small_run, tmp_path):
    zpath, lpath, _, s, y, parts = small_run
    r1, r2 = _real_run(tmp_path / "r1", 0, small_run), _real_run(tmp_path / "r2", 1, small_run)
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    ensemble([r1, r2], full)
    with pytest.raises(ClearfaceError, match="--data and --labels"):
        ensemble([r1, r2], tmp_path / "x.pt", half=True)
    res = ensemble([r1, r2], half, half=True, data=zpath, labels=lpath)
    assert res["weights_dtype"] == "float16" and "float16" in res["threshold_source"]
    assert half.stat().st_size < 0.6 * full.stat().st_size
    blob = load_model_file(half)
    assert blob["weights_dtype"] == "float16"
    assert all(v.dtype != torch.float32 for m in blob["members"] for v in m["state_dict"].values())
    val = parts == "val"
    sv = TorchEngine(blob).score(s.images[val])  # scores of exactly the stored weights
    assert res["threshold"] == fit_threshold(sv, y[val], "min_hter") == blob["threshold"]
    scorer = build_scorer(blob)
    assert all(p.dtype == torch.float32 for p in scorer.parameters())  # computes in float32
    x = torch.rand(4, 3, 64, 64)
    diff = (scorer(x) - build_scorer(load_model_file(full))(x)).abs().max()
    assert 0 < diff < 5e-3


def test_members_are_weighted_by_their_member_count():
    blobs = [{"members": [1, 2, 3]}, {"members": [4]}]
    w = member_weights(blobs)
    assert w.tolist() == [0.75, 0.25]
    assert mean_score([np.array([0.4]), np.array([0.8])], w).tolist() == pytest.approx([0.5])
