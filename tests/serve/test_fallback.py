"""int8 with float re-scoring near tau (``--engine int8``): the band, the engine, the pairing, the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from clearface.errors import ClearfaceError


def _logit(p):
    return np.log(p / (1 - p))


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_fallback_margin_is_the_narrowest_band_that_reaches_the_agreement():
    from clearface.quantize import choose_fallback_margin, near_threshold
    tau = 0.4
    rng = np.random.default_rng(0)
    f = _sigmoid(_logit(tau) + rng.normal(0, 3, 2000))
    q = _sigmoid(_logit(f) + rng.normal(0, 0.3, 2000))  # int8-like noise: flips near tau only
    flips = (f >= tau) != (q >= tau)
    assert flips.sum() > 10
    for agreement in (0.995, 0.999, 1.0):
        m = choose_fallback_margin(f, q, tau, agreement)
        labels = np.where(near_threshold(q, tau, m), f >= tau, q >= tau)
        assert (labels == (f >= tau)).mean() >= agreement
        # narrower by a hair: one more flip stays outside the band, below the agreement asked for
        narrower = np.where(near_threshold(q, tau, np.nextafter(m, 0)), f >= tau, q >= tau)
        assert (narrower == (f >= tau)).mean() < agreement
    assert choose_fallback_margin(f, f, tau, 1.0) == 0.0  # no flips: no band
    assert choose_fallback_margin(f, q, tau, 0.0) == 0.0
    with pytest.raises(ClearfaceError, match="as many"):
        choose_fallback_margin(f, q[:-1], tau)


class _Stub:
    """An engine returning fixed scores per image id (pixel [0, 0, 0]), counting what it was asked."""

    def __init__(self, table, engine):
        self.table, self.asked, self.path = table, [], f"{engine}.onnx"
        self.info = {"threshold": 0.5, "engine": engine, "model": "m.pt"}

    def score(self, images, batch_size=512):
        ids = images[:, 0, 0, 0].astype(int)
        self.asked.append(ids.tolist())
        return self.table[ids].astype(np.float32)


def test_fallback_engine_takes_float_scores_inside_the_band_only():
    from clearface.engines import FallbackEngine
    f = np.array([0.10, 0.45, 0.52, 0.58, 0.90], np.float32)
    q = np.array([0.12, 0.53, 0.47, 0.70, 0.88], np.float32)  # ids 1 and 2 flip around tau 0.5
    images = np.zeros((5, 3, 64, 64), np.uint8)
    images[:, 0, 0, 0] = np.arange(5)
    eng = FallbackEngine(_Stub(q, "int8"), _Stub(f, "float"), tau=0.5, margin=0.3)
    got = eng.score(images)
    assert eng.float_engine.asked == [[1, 2]]  # only the two within 0.3 logits of tau went to float
    assert np.array_equal(got, np.array([0.12, 0.45, 0.52, 0.70, 0.88], np.float32))
    assert np.array_equal(got >= 0.5, f >= 0.5)
    assert (eng.scored, eng.rescored) == (5, 2)
    assert eng.info["engine"] == "onnx-int8+float" and eng.info["threshold"] == 0.5
    eng.tau = 0.65  # a tau given at predict time moves the band with it
    eng.score(images)
    assert eng.float_engine.asked[-1] == [3]


@pytest.fixture()
def paired(tiny_model_file, real_small, tmp_path):
    """The tiny model with tau at its median score (so int8 rounding flips labels), and its int8
    export beside it with the band for 100 % agreement on ``real_small``."""
    from clearface.cli import main
    from clearface.data import load_images
    from clearface.engines import TorchEngine
    from clearface.modelfile import load_model_file, save_model_file
    zip_path, _, _ = real_small
    blob = load_model_file(tiny_model_file)
    blob["threshold"] = float(np.median(TorchEngine(blob).score(load_images(zip_path, use_cache=False).images)))
    model = tmp_path / "m.pt"
    save_model_file({k: v for k, v in blob.items() if k != "path"}, model)
    assert main(["export", "--int8", "--model", str(model), "--out", str(tmp_path / "m.int8.onnx"),
                 "--calib-data", str(zip_path), "--calib-images", "64", "--fallback-agreement", "1"]) == 0
    return model


def test_int8_engine_gives_float_labels_on_the_images_its_band_was_chosen_on(paired, real_small, tmp_path, capsys):
    from clearface.cli import main
    from clearface.export import read_metadata
    from clearface.outputs import file_sha256
    fb = read_metadata(paired.with_name("m.int8.onnx"))["fallback"]
    assert fb["source_sha256"] == file_sha256(paired) and fb["agreement_target"] == 1.0
    assert fb["margin_logit"] > 0 and fb["agreement_without"] < 1  # int8 alone flips some labels here
    zip_path, _, _ = real_small
    capsys.readouterr()
    outs = {}
    for engine in ("onnx", "int8"):
        out = tmp_path / f"{engine}.txt"
        assert main(["predict", "--model", str(paired), "--data", str(zip_path), "--out", str(out),
                     "--scores", str(tmp_path / f"{engine}.csv"), "--engine", engine, "--json"]) == 0
        outs[engine] = (out.read_text().split(), json.loads(capsys.readouterr().out))
    assert outs["int8"][1]["engine"] == "onnx-int8+float" and outs["onnx"][1]["engine"] == "onnx"
    assert outs["int8"][0] == outs["onnx"][0]  # agreement 1 on these very images: every label is the float one
    rescored = outs["int8"][1]["rescored_in_float"]
    assert 0 < rescored < 300
    # the scores outside the band are int8's own, not float's
    s = {e: np.loadtxt(tmp_path / f"{e}.csv", delimiter=",", skiprows=1, usecols=1) for e in outs}
    assert (s["int8"] != s["onnx"]).sum() >= 300 - rescored - 5


def test_int8_engine_refuses_a_missing_or_foreign_int8_file(paired, real_small, tmp_path, capsys, monkeypatch):
    from clearface.cli import main
    from clearface import engines
    zip_path, _, _ = real_small
    other = tmp_path / "other.pt"
    shutil.copy(paired, other)
    capsys.readouterr()
    assert main(["predict", "--model", str(other), "--data", str(zip_path), "--out", str(tmp_path / "a.txt"),
                 "--engine", "int8"]) == 2
    err = capsys.readouterr().err
    assert "other.int8.onnx" in err and "export --int8" in err and "Traceback" not in err
    assert not (tmp_path / "a.txt").exists()
    # an int8 file made from another model file is never paired with this one
    shutil.copy(paired.with_name("m.int8.onnx"), tmp_path / "other.int8.onnx")
    other.write_bytes(other.read_bytes() + b"\0")  # same weights, different file
    assert main(["predict", "--model", str(other), "--data", str(zip_path), "--out", str(tmp_path / "a.txt"),
                 "--engine", "int8"]) == 2
    assert "made from another model file" in capsys.readouterr().err
    # auto on a VNNI CPU: warns and scores in float instead
    monkeypatch.setattr(engines, "cpu_has_vnni", lambda: True)
    eng = engines.load_engine(other, "auto", auto_int8=True)
    assert eng.info["engine"] == "onnx" and "not made from" in capsys.readouterr().err


def test_auto_picks_int8_only_where_the_cpu_has_vnni(paired, monkeypatch):
    from clearface import engines
    monkeypatch.setattr(engines, "cpu_has_vnni", lambda: False)
    assert engines.load_engine(paired, "auto", auto_int8=True).info["engine"] == "onnx"
    monkeypatch.setattr(engines, "cpu_has_vnni", lambda: True)
    eng = engines.load_engine(paired, "auto", auto_int8=True)
    assert eng.info["engine"] == "onnx-int8+float" and eng.info["int8"].endswith("m.int8.onnx")
    assert engines.load_engine(paired, "onnx", auto_int8=True).info["engine"] == "onnx"
    # callers that use scores away from tau (evaluate, report, pseudolabel) keep float under auto
    assert engines.load_engine(paired, "auto").info["engine"] == "onnx"


def test_predict_uses_int8_under_auto_and_evaluate_does_not(paired, real_small, tmp_path, monkeypatch):
    from clearface import engines
    from clearface.predict import evaluate, predict
    monkeypatch.setattr(engines, "cpu_has_vnni", lambda: True)
    zip_path, labels_path, _ = real_small
    assert predict(paired, zip_path, tmp_path / "p.txt")["engine"] == "onnx-int8+float"
    assert evaluate(paired, zip_path, labels_path)["engine"] == "onnx"


def test_calib_part_uses_only_the_models_validation_part(tiny_model_file, real_small, tmp_path, capsys):
    from clearface.cli import main
    from clearface.data import load_images, read_labels
    from clearface.data.split import split_from_config
    from clearface.export import read_metadata
    from clearface.modelfile import load_model_file, save_model_file
    zip_path, labels_path, _ = real_small
    blob = load_model_file(tiny_model_file)
    blob["config"] = dict(blob["config"], holdout=80, val_fraction=0.3, split_seed=0)
    model = tmp_path / "m.pt"
    save_model_file({k: v for k, v in blob.items() if k != "path"}, model)
    out = tmp_path / "m.int8.onnx"
    base = ["export", "--int8", "--model", str(model), "--out", str(out), "--calib-data", str(zip_path)]
    assert main(base + ["--calib-part", "val"]) == 2  # the split needs the labels
    assert "--calib-labels" in capsys.readouterr().err and not out.exists()
    assert main(base + ["--calib-part", "val", "--calib-labels", str(labels_path), "--json"]) == 0
    capsys.readouterr()
    meta = read_metadata(out)
    loaded = load_images(zip_path, use_cache=False)
    parts = split_from_config(blob["config"], loaded.hashes, read_labels(labels_path))
    n_val = int((parts == "val").sum())
    assert 0 < n_val < 300 - 80
    assert meta["quantization"]["calibration_images"] == n_val  # fewer than 1000: all of the val part
    assert f"({n_val} labelled images)" in meta["threshold_source"] and "val part" in meta["threshold_source"]
    assert meta["fallback"]["chosen_on"].endswith(f"({n_val} images)")


def test_int8_settings_without_int8_are_refused(tiny_model_file, tmp_path, capsys):
    from clearface.cli import main
    out = tmp_path / "f.onnx"
    for extra in (["--calib-method", "entropy"], ["--full-range"], ["--calib-part", "val"],
                  ["--fallback-agreement", "0.99"], ["--calib-images", "10"]):
        assert main(["export", "--model", str(tiny_model_file), "--out", str(out)] + extra) == 2
        err = capsys.readouterr().err
        assert "only applies with --int8" in err and extra[0] in err and not out.exists()
    assert main(["export", "--int8", "--model", str(tiny_model_file), "--out", str(out), "--calib-data", "x.zip",
                 "--calib-percentile", "99"]) == 2
    assert "--calib-method percentile" in capsys.readouterr().err


def test_packaged_default_ships_the_int8_export_made_from_it(real_small):
    from clearface.data import load_images
    from clearface.engines import int8_sibling, load_engine
    from clearface.export import read_metadata
    from clearface.modelfile import packaged_model_path
    from clearface.outputs import file_sha256
    packaged = packaged_model_path()
    if packaged is None:
        pytest.skip("this build ships no model")
    fb = read_metadata(int8_sibling(packaged))["fallback"]
    assert fb["source_sha256"] == file_sha256(packaged)  # re-export it whenever the default changes
    assert 0 < fb["margin_logit"] < 2 and "val part" in fb["chosen_on"]
    images = load_images(real_small[0], use_cache=False).images
    fl, q = load_engine("default", "onnx"), load_engine("default", "int8")
    assert q.info["engine"] == "onnx-int8+float" and q.info["threshold"] == fl.info["threshold"]
    tau = fl.info["threshold"]
    assert ((q.score(images) >= tau) == (fl.score(images) >= tau)).mean() >= 0.99


def test_int8_recipe_rebuilds_the_measured_file_and_serves_like_it(paired, real_small, tmp_path, capsys):
    """``--out MODEL.int8.json``: ranges and metadata without weights; the engine rebuilds the int8
    file from the float export, byte for byte, and refuses a rebuild that differs."""
    from clearface.cli import main
    from clearface.engines import load_engine
    from clearface.outputs import file_sha256
    from clearface.quantize import build_from_recipe, read_recipe
    zip_path, _, _ = real_small
    onnx_labels = paired.with_name("m.int8.onnx")
    model = tmp_path / "r" / "m.pt"  # a second copy of the model whose int8 version is only a recipe
    model.parent.mkdir()
    shutil.copy(paired, model)
    recipe_path = model.with_name("m.int8.json")
    assert main(["export", "--int8", "--model", str(model), "--out", str(recipe_path), "--calib-data",
                 str(zip_path), "--calib-images", "64", "--fallback-agreement", "1"]) == 0
    recipe = read_recipe(recipe_path)
    assert recipe_path.stat().st_size < 100_000 and recipe["meta"]["fallback"]["source_sha256"] == file_sha256(model)
    # the recipe made from the same calibration rebuilds exactly the .onnx exported beside `paired`
    assert recipe["int8_sha256"] == file_sha256(onnx_labels)
    float_onnx = load_engine(model, "onnx").path
    build_from_recipe(float_onnx, recipe_path, tmp_path / "rebuilt.onnx")
    assert file_sha256(tmp_path / "rebuilt.onnx") == recipe["int8_sha256"]
    capsys.readouterr()
    out = {}
    for m in (paired, model):
        assert main(["predict", "--model", str(m), "--data", str(zip_path), "--out", str(tmp_path / "o.txt"),
                     "--engine", "int8", "--json"]) == 0
        out[m] = ((tmp_path / "o.txt").read_text(), json.loads(capsys.readouterr().out))
    assert out[model][1]["engine"] == "onnx-int8+float" and out[model][0] == out[paired][0]
    # a recipe whose ranges were changed rebuilds another model: refused, nothing used
    bad = json.loads(recipe_path.read_text())
    for tensor in bad["ranges"]["data"].values():  # onnxruntime's cache: {"data": {tensor: {"highest": ...}}}
        tensor["highest"]["data"] = [x * 0.5 for x in tensor["highest"]["data"]]
    recipe_path.write_text(json.dumps(bad))
    with pytest.raises(ClearfaceError, match="differs from the one measured"):
        build_from_recipe(float_onnx, recipe_path, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()
    recipe_path.write_text("{}")
    assert main(["predict", "--model", str(model), "--data", str(zip_path), "--out", str(tmp_path / "o2.txt"),
                 "--engine", "int8"]) == 2
    assert "not a clearface int8 recipe" in capsys.readouterr().err and not (tmp_path / "o2.txt").exists()


@pytest.mark.slow
def test_packaged_ensemble_int8_recipe_rebuilds_byte_identical(real_small, tmp_path):
    """The ensemble ships its int8 version as a recipe (its int8 file would break the package budget):
    on this onnxruntime it must rebuild into exactly the file that was measured."""
    from clearface.data import load_images
    from clearface.engines import RECIPE_SUFFIX, int8_sibling, load_engine
    from clearface.modelfile import packaged_model_path
    from clearface.outputs import file_sha256
    from clearface.quantize import read_recipe
    packaged = packaged_model_path("ensemble")
    if packaged is None:
        pytest.skip("this build ships no ensemble")
    recipe = read_recipe(int8_sibling(packaged, RECIPE_SUFFIX))
    assert recipe["meta"]["fallback"]["source_sha256"] == file_sha256(packaged)
    q = load_engine("ensemble", "int8", cache_dir=tmp_path)  # rebuilds; refused unless byte-identical
    assert q.info["engine"] == "onnx-int8+float" and file_sha256(q.int8.path) == recipe["int8_sha256"]
    images = load_images(real_small[0], use_cache=False).images[:100]
    tau = q.info["threshold"]
    assert ((q.score(images) >= tau) == (q.float_engine.score(images) >= tau)).mean() >= 0.99
