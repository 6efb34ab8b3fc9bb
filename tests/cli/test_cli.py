"""The command as a user runs it: clear one-line errors, non-zero exits, no half-written files."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import TRAIN_LABELS, TRAIN_ZIP, jpeg_bytes, write_labels, write_zip


def run(*args, cwd=None, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "clearface.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


def assert_clean_error(res, *fragments):
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr
    err_lines = [l for l in res.stderr.splitlines() if l.startswith("clearface: error:")]
    assert len(err_lines) == 1, res.stderr
    for f in fragments:
        assert f in err_lines[0], err_lines[0]


def test_help_does_not_import_torch():
    code = "import sys; from clearface.cli import build_parser; build_parser(); print('torch' in sys.modules, 'lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
    res = run("--help")
    assert res.returncode == 0 and "train" in res.stdout and "predict" in res.stdout


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("0", "0")])
def test_commands_ask_torch_for_huge_pages_unless_told_not_to(preset, expected):
    """torch reads THP_MEM_ALLOC_ENABLE at its first allocation: main() sets it before any command imports torch."""
    code = ("import os, sys, contextlib, io; from clearface.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['models'])\n"
            "print('torch' in sys.modules, os.environ.get('THP_MEM_ALLOC_ENABLE'))")
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if preset is not None:
        env["THP_MEM_ALLOC_ENABLE"] = preset
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == f"True {expected}"


def test_models_lists_registry():
    res = run("models")
    assert res.returncode == 0 and "cfnet" in res.stdout


def _rgb(seed):
    return np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)


@pytest.fixture()
def bad_inputs(tmp_path):
    good = [jpeg_bytes(_rgb(i)) for i in range(4)]
    d = {}
    d["zip"] = write_zip(tmp_path / "ok.zip", good)
    d["labels"] = write_labels(tmp_path / "ok.txt", [0, 1, 1, 0])
    d["short_labels"] = write_labels(tmp_path / "short.txt", [0, 1, 1])
    (tmp_path / "bad_value.txt").write_text("0\n1\nx\n0\n")
    d["bad_value"] = tmp_path / "bad_value.txt"
    d["corrupt"] = write_zip(tmp_path / "corrupt.zip", good[:3] + [b"\xff\xd8garbage"])
    d["notzip"] = tmp_path / "notzip.zip"
    d["notzip"].write_text("plain text")
    d["badmodel"] = tmp_path / "model.pt"
    d["badmodel"].write_bytes(b"not a model")
    return d


@pytest.mark.parametrize("case", ["count", "value", "corrupt", "notzip", "missing"])
def test_train_bad_inputs(bad_inputs, tmp_path, case):
    d = bad_inputs
    data, labels = d["zip"], d["labels"]
    expect = []
    if case == "count":
        labels, expect = d["short_labels"], ["3 labels but 4 images"]
    elif case == "value":
        labels, expect = d["bad_value"], ["bad_value.txt:3", "'x'"]
    elif case == "corrupt":
        data, expect = d["corrupt"], ["000004.jpg", "corrupt"]
    elif case == "notzip":
        data, expect = d["notzip"], ["notzip.zip", "not a zip"]
    elif case == "missing":
        data, expect = tmp_path / "nothere.zip", ["nothere.zip", "no such file"]
    res = run("train", "--data", data, "--labels", labels, "--out", tmp_path / "run", "--cache-dir", tmp_path / "c")
    assert_clean_error(res, *expect)
    assert not (tmp_path / "run" / "model.pt").exists()


def test_unknown_setting_is_rejected(bad_inputs, tmp_path):
    res = run("train", "--data", bad_inputs["zip"], "--labels", bad_inputs["labels"], "--out", tmp_path / "r",
              "--epochz", "3")
    assert_clean_error(res, "unknown setting 'epochz'")


def test_weights_and_no_pretrained_flags(bad_inputs, tmp_path):
    base = ("train", "--data", bad_inputs["zip"], "--labels", bad_inputs["labels"], "--out", tmp_path / "r",
            "--holdout", "0")
    # --weights reaches the model's loader: a missing file is named before any training
    res = run(*base, "--model", "mobilenet_v2", "--weights", tmp_path / "nothere.pth")
    assert_clean_error(res, "nothere.pth", "not found")
    res = run(*base, "--model", "mobilenet_v2", "--weights", tmp_path / "w.pth", "--no-pretrained")
    assert_clean_error(res, "--weights", "--no-pretrained")
    # a model without pretrained weights says so instead of failing inside the constructor
    res = run(*base, "--model", "cfnet", "--no-pretrained")
    assert_clean_error(res, "cfnet", "pretrained")
    assert not (tmp_path / "r" / "model.pt").exists()


def test_predict_missing_and_bad_model(bad_inputs, tmp_path):
    out = tmp_path / "labels.txt"
    res = run("predict", "--model", tmp_path / "none.pt", "--data", bad_inputs["zip"], "--out", out)
    assert_clean_error(res, "none.pt", "no such model file")
    res = run("predict", "--model", bad_inputs["badmodel"], "--data", bad_inputs["zip"], "--out", out)
    assert_clean_error(res, "model.pt", "not a readable clearface model")
    assert not out.exists()


def test_predict_corrupt_image_leaves_no_output(bad_inputs, tiny_model_file, tmp_path):
    out = tmp_path / "labels.txt"
    res = run("predict", "--model", tiny_model_file, "--data", bad_inputs["corrupt"], "--out", out)
    assert_clean_error(res, "000004.jpg")
    assert not out.exists() and not list(tmp_path.glob(".labels.txt*"))


def test_predict_and_evaluate_with_model(real_small, tiny_model_file, tmp_path):
    zpath, lpath, labels = real_small
    out, scores = tmp_path / "pred.txt", tmp_path / "scores.csv"
    res = run("predict", "--model", tiny_model_file, "--data", zpath, "--out", out, "--scores", scores)
    assert res.returncode == 0, res.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 300 and set(lines) <= {"0", "1"}
    rows = scores.read_text().splitlines()
    assert rows[0] == "name,score,label" and rows[1].startswith("train_img/000001.jpg,")
    # labels follow the stored tau (0.5) unless --threshold is given
    s = np.array([float(r.split(",")[1]) for r in rows[1:]])
    assert [int(v) for v in lines] == (s >= 0.5).astype(int).tolist()
    res = run("predict", "--model", tiny_model_file, "--data", zpath, "--out", out, "--threshold", "1")
    assert set(out.read_text().split()) == {"0"}
    res = run("evaluate", "--model", tiny_model_file, "--data", zpath, "--labels", lpath, "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)
    assert m["n"] == 300 and m["n_pos"] == int(labels.sum()) and 0 <= m["hter"] <= 1
    assert m["threshold"] == 0.5


def test_predict_without_model_and_without_packaged_one(bad_inputs, tmp_path, monkeypatch, capsys):
    import clearface.modelfile as inf
    from clearface.cli import main
    monkeypatch.setattr(inf, "packaged_model_path", lambda name="default": None)
    code = main(["predict", "--data", str(bad_inputs["zip"]), "--out", str(tmp_path / "x.txt")])
    assert code == 2 and "no --model given" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()


def test_wrong_size_image_needs_resize(tmp_path, tiny_model_file):
    z = write_zip(tmp_path / "big.zip", [jpeg_bytes(np.zeros((90, 70, 3), np.uint8))])
    res = run("predict", "--model", tiny_model_file, "--data", z, "--out", tmp_path / "o.txt")
    assert_clean_error(res, "000001.jpg", "70x90", "--resize")
    res = run("predict", "--model", tiny_model_file, "--data", z, "--out", tmp_path / "o.txt", "--resize")
    assert res.returncode == 0 and (tmp_path / "o.txt").read_text() in ("0\n", "1\n")


def test_unsafe_zip_entry(tmp_path, tiny_model_file):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("/abs/1.jpg", jpeg_bytes(_rgb(0)))
    res = run("predict", "--model", tiny_model_file, "--data", z, "--out", tmp_path / "o.txt")
    assert_clean_error(res, "unsafe entry")


def _facenet_model_file(path):
    from clearface.modelfile import make_model_file, save_model_file
    from clearface.models import IMAGENET_MEAN, IMAGENET_STD, get_model
    from clearface.settings import resolve
    net = get_model("facenet_seed")
    member = {"model": "facenet_seed", "model_kwargs": {}, "build_kwargs": {}, "state_dict": net.state_dict()}
    blob = make_model_file([member], IMAGENET_MEAN, IMAGENET_STD, "none", 0.5, "min_hter", "test", {},
                           resolve(overrides={"model": "facenet_seed"}))
    save_model_file(blob, path)


def test_predict_embeddings_with_facenet(real_small, tmp_path):
    _facenet_model_file(tmp_path / "facenet.pt")
    zpath, _, _ = real_small
    emb = tmp_path / "emb.npy"
    res = run("predict", "--model", tmp_path / "facenet.pt", "--data", zpath, "--out", tmp_path / "o.txt",
              "--embeddings", emb, "--engine", "torch")
    assert res.returncode == 0, res.stderr
    assert np.load(emb).shape == (300, 128)


def test_predict_embeddings_with_the_torch_engine_builds_the_net_once(real_small, tmp_path, monkeypatch):
    """--embeddings already builds the PyTorch engine; --engine torch scores with that same one."""
    import clearface.engines as engines
    from clearface.predict import predict
    _facenet_model_file(tmp_path / "facenet.pt")
    built = []
    real_build = engines.build_scorer
    monkeypatch.setattr(engines, "build_scorer", lambda blob: built.append(1) or real_build(blob))
    zpath, _, _ = real_small
    res = predict(tmp_path / "facenet.pt", zpath, tmp_path / "o.txt", engine="torch",
                  embeddings_path=tmp_path / "e.npy", cache_dir=tmp_path / "cache")
    assert res["n"] == 300 and np.load(tmp_path / "e.npy").shape == (300, 128)
    assert len(built) == 1


def test_predict_embeddings_needs_embed(real_small, tiny_model_file, tmp_path):
    zpath, _, _ = real_small
    res = run("predict", "--model", tiny_model_file, "--data", zpath, "--out", tmp_path / "o.txt",
              "--embeddings", tmp_path / "e.npy", "--engine", "torch")
    assert_clean_error(res, "has no embed()")
    assert not (tmp_path / "o.txt").exists()


def test_packaged_model_is_the_default(real_small, tmp_path):
    import clearface.modelfile as inf
    packaged = inf.packaged_model_path()
    if packaged is None:
        pytest.skip("this build ships no model")
    blob = inf.load_model_file(packaged)
    assert 0 < blob["threshold"] < 1 and blob["threshold_method"] in ("min_hter", "eer")
    assert "validation" in blob["threshold_source"] and "test" in blob["metrics"]
    # everything shipped (default + ensemble, their int8 export / recipe) fits the package budget
    shipped = [f for f in packaged.parent.iterdir() if f.suffix in (".pt", ".onnx", ".json")]
    assert sum(f.stat().st_size for f in shipped) <= 25 * 1024 * 1024
    zpath, lpath, labels = real_small
    out = tmp_path / "o.txt"
    res = run("predict", "--data", zpath, "--out", out, "--engine", "torch")
    assert res.returncode == 0, res.stderr
    pred = np.array([int(v) for v in out.read_text().split()])
    # a trained model: far better than chance on these 300 real (training-set) images
    assert (pred == labels).mean() > 0.8


def test_calibrate_needs_the_training_run(real_small, tiny_model_file, tmp_path):
    zpath, lpath, _ = real_small
    out = tmp_path / "re.pt"
    res = run("calibrate", "--model", tiny_model_file, "--run", tmp_path, "--data", zpath, "--labels", lpath,
              "--out", out, "--tta", "none")
    assert_clean_error(res, "split.csv", "--run")
    assert not out.exists()


def test_pseudo_label_inputs_are_checked(real_small, tiny_model_file, tmp_path):
    zpath, lpath, _ = real_small
    res = run("pseudolabel", "--model", tiny_model_file, "--run", tmp_path, "--data", zpath, "--labels", lpath,
              "--unlabelled", zpath, "--out", tmp_path / "p.csv")
    assert_clean_error(res, "split.csv")
    assert not (tmp_path / "p.csv").exists()
    missing = tmp_path / "missing.csv"
    res = run("train", "--data", zpath, "--labels", lpath, "--out", tmp_path / "run", "--limit-images", "100",
              "--holdout", "0", "--pseudo_data", zpath, "--pseudo_labels", missing, "--cache-dir", tmp_path / "cache")
    assert_clean_error(res, str(missing), "pseudo-label")
    assert not (tmp_path / "run" / "model.pt").exists()
