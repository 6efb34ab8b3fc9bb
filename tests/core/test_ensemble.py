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


SMALL_SPLIT = {"val_fraction": 0.3, "holdout": 80, "split_seed": 0}  # the split small_run saves


def _real_run(d, seed, small_run):
    """A finished run on the real slice: model file, split and its own float32 score files."""
    zpath, lpath, _, s, y, parts = small_run
    d.mkdir()
    torch.manual_seed(seed)
    member = {"model": "cfnet_tiny", "model_kwargs": {}, "build_kwargs": {},
              "state_dict": get_model("cfnet_tiny").state_dict()}
    blob = make_model_file([member], IMAGENET_MEAN, IMAGENET_STD, "flip", 0.5, "min_hter", "val", {},
                           resolve(overrides=dict(SMALL_SPLIT, model="cfnet_tiny")))
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


def _model_file(path, seed, split_settings, tta="flip"):
    """A one-member model file (no run folder) whose stored settings make ``split_settings``' split."""
    torch.manual_seed(seed)
    member = {"model": "cfnet_tiny", "model_kwargs": {}, "build_kwargs": {},
              "state_dict": get_model("cfnet_tiny").state_dict()}
    blob = make_model_file([member], IMAGENET_MEAN, IMAGENET_STD, tta, 0.5, "min_hter", "val", {},
                           resolve(overrides=dict(split_settings, model="cfnet_tiny")))
    save_model_file(blob, path)
    return path


def test_model_files_and_chosen_members_merge_with_tau_from_scoring(small_run, tmp_path):
    zpath, lpath, run, s, y, parts = small_run
    r1 = _real_run(tmp_path / "r1", 0, small_run)
    f2, f3 = (_model_file(tmp_path / f"m{k}.pt", k, SMALL_SPLIT) for k in (2, 3))
    both = tmp_path / "both.pt"
    with pytest.raises(ClearfaceError, match="--data and --labels"):
        ensemble([r1, f2], both)
    ensemble([f2, f3], both, data=zpath, labels=lpath, run=run)
    assert load_model_file(both)["config"]["ensemble_of"] == ["m2", "m3"]  # the members keep their names
    # keep two of the three members of a run folder and two merged files; tau from the stored weights' scores
    out = tmp_path / "kept.pt"
    res = ensemble([r1, both], out, data=zpath, labels=lpath, only=["r1", "m3"], half=True)
    blob = load_model_file(out)
    assert res["members"] == ["r1", "m3"] and len(blob["members"]) == 2 and blob["weights_dtype"] == "float16"
    x = torch.rand(3, 3, 64, 64)
    expect = [build_scorer(load_model_file(p))(x) for p in (r1 / "model.pt", f3)]
    assert torch.allclose(build_scorer(blob)(x), (expect[0] + expect[1]) / 2, atol=5e-3)
    val = parts == "val"
    assert res["threshold"] == fit_threshold(TorchEngine(blob).score(s.images[val]), y[val], "min_hter")
    with pytest.raises(ClearfaceError, match="no such member.*r1, m2, m3"):
        ensemble([r1, both], tmp_path / "x.pt", data=zpath, labels=lpath, only=["r1", "m4"])


def test_model_files_must_share_the_split_and_tta(small_run, tmp_path):
    zpath, lpath, run, *_ = small_run
    f2 = _model_file(tmp_path / "m2.pt", 2, SMALL_SPLIT)
    other = _model_file(tmp_path / "other.pt", 3, dict(SMALL_SPLIT, split_seed=1))
    with pytest.raises(ClearfaceError, match="other.*other val images"):
        ensemble([f2, other], tmp_path / "x.pt", data=zpath, labels=lpath, run=run)
    with pytest.raises(ClearfaceError, match="give --run"):
        ensemble([f2, f2], tmp_path / "x.pt", data=zpath, labels=lpath)
    plain = _model_file(tmp_path / "plain.pt", 4, SMALL_SPLIT, tta="none")
    with pytest.raises(ClearfaceError, match="give --tta"):
        ensemble([f2, plain], tmp_path / "x.pt", data=zpath, labels=lpath, run=run)
    res = ensemble([f2, plain], tmp_path / "x.pt", data=zpath, labels=lpath, run=run, tta="flip")
    assert load_model_file(tmp_path / "x.pt")["tta"] == "flip" and "tta flip" in res["threshold_source"]
