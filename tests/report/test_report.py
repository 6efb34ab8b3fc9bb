"""`clearface report`: the page is self-contained, its numbers are clearface.metrics' numbers,
the DET axes are probit, Grad-CAM maps are sane, and --run adds the training curves."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from clearface import metrics
from clearface.errors import ClearfaceError

N_BOOT = 200


@pytest.fixture(scope="module")
def report(real_small, tiny_model_file, tmp_path_factory):
    from clearface.report import build_report
    zip_path, labels_path, labels = real_small
    out = tmp_path_factory.mktemp("report") / "rep"
    result = build_report(tiny_model_file, zip_path, labels_path, out, engine="torch", n_boot=N_BOOT)
    return out, result, labels


def _refs(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html, flags=re.I)


def _scores(out: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with open(out / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return ([r["name"] for r in rows], np.array([float(r["score"]) for r in rows], np.float32),
            np.array([int(r["label"]) for r in rows], np.int8))


def test_page_is_self_contained(report):
    out, result, _ = report
    html = (out / "index.html").read_text(encoding="utf-8")
    assert html.lstrip().startswith("<!DOCTYPE html>")
    low = html.lower()
    for bad in ('src="http', "src='http", 'href="http', "href='http", 'src="//', 'href="//', "url(http", "@import"):
        assert bad not in low, bad
    assert "<script" not in low  # nothing to fetch, nothing to run
    refs = _refs(html)
    assert refs, "the page references its figures and thumbnails"
    for ref in refs:
        assert not re.match(r"^[a-z]+:", ref), ref  # relative paths only (no file:, data: needed either)
        assert (out / ref).is_file(), ref
    for name in ("roc", "det", "error_vs_tau", "histogram", "confusion"):
        assert f"figures/{name}.png" in refs
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "figures/training.png" not in refs  # no --run
    assert html.count("How to read this") >= 8
    assert not list(out.parent.glob(".rep.tmp*")), "temporary build folder left behind"


def test_metrics_json_equals_clearface_metrics(report, real_small, tiny_model_file):
    out, result, labels = report
    saved = json.loads((out / "metrics.json").read_text())
    names, scores, y = _scores(out)
    np.testing.assert_array_equal(y, labels)
    assert len(names) == len(labels) == saved["headline"]["n"]

    # The scores are the model's scores of these images.
    from clearface.data import load_images
    from clearface.engines import load_engine
    imgs = load_images(real_small[0], use_cache=False)
    direct = load_engine(tiny_model_file, engine="torch").score(imgs.images)
    np.testing.assert_allclose(scores, direct, rtol=0, atol=1e-6)
    assert names == imgs.names

    tau = saved["threshold"]["value"]
    assert tau == 0.5  # the fixture model's stored tau
    assert saved["threshold"]["method"] == "min_hter" and saved["threshold"]["source"] == "test fixture"
    for key, t in (("headline", tau), ("at_tau_0_5", 0.5)):
        h = saved[key]
        want = metrics.summarize(scores, y, t).as_dict()
        for k, v in want.items():
            assert h[k] == pytest.approx(v, rel=1e-12, abs=1e-12), (key, k)
        assert h["hter_ci95"] == pytest.approx(list(metrics.bootstrap_hter(scores, y, t, n_boot=N_BOOT, seed=0)))
        far, frr = metrics.far_frr(scores, y, t)
        assert h["false_accepts"] == round(far * h["n_neg"]) and h["false_rejects"] == round(frr * h["n_pos"])
        c = h["confusion"]
        assert c["tn"] + c["fp"] == h["n_neg"] and c["fn"] + c["tp"] == h["n_pos"]
    # The returned dict is what was saved.
    assert result["headline"]["hter"] == saved["headline"]["hter"]
    # Operating points: the FAR-held rows really hold FAR.
    for op in saved["operating_points"]:
        assert op[op["fixed"].lower()] <= op["target"] + 1e-12


def test_galleries_are_the_worst_mistakes(report):
    out, result, _ = report
    names, scores, y = _scores(out)
    tau = result["threshold"]["value"]
    g = result["galleries"]
    fa = [i for i in range(len(y)) if y[i] == 0 and scores[i] >= tau]
    fr = [i for i in range(len(y)) if y[i] == 1 and scores[i] < tau]
    assert result["gallery_totals"]["false_accepts"] == len(fa)
    assert result["gallery_totals"]["false_rejects"] == len(fr)
    if fa:
        top = sorted(scores[fa], reverse=True)[:len(g["false_accepts"])]
        assert [it["score"] for it in g["false_accepts"]] == pytest.approx(top)
    if fr:
        low = sorted(scores[fr])[:len(g["false_rejects"])]
        assert [it["score"] for it in g["false_rejects"]] == pytest.approx(low)
    for it in g["correct"]:
        assert (it["score"] >= tau) == bool(it["label"])
    from PIL import Image
    for it in g["false_accepts"] + g["false_rejects"] + g["correct"]:
        with Image.open(out / it["file"]) as im:
            assert im.size == (128, 128)


def test_det_axes_are_probit():
    from clearface.report.axes import det_limits, det_ticks, percent_label, probit
    nd = NormalDist()
    p = np.array([0.001, 0.01, 0.05, 0.2, 0.4, 0.5, 0.9])
    np.testing.assert_allclose(probit(p), [nd.inv_cdf(v) for v in p], atol=1e-12)
    assert probit(0.5) == 0
    assert np.isneginf(probit(0.0)) and np.isposinf(probit(1.0))
    pos, labels = det_ticks(0.001, 0.6)
    for want in ("0.1", "1", "5", "20", "40"):
        assert want in labels
    np.testing.assert_allclose(pos, [nd.inv_cdf(float(lab) / 100) for lab in labels], atol=1e-12)
    assert np.all(np.diff(pos) > 0)
    assert percent_label(0.001) == "0.1" and percent_label(0.4) == "40"
    lo, hi = det_limits(n_neg=1200, n_pos=8800, eer=0.05)
    assert 1e-4 <= lo <= 1 / 1200 and hi == 0.6
    assert det_limits(50, 50, eer=0.45)[1] > 0.9  # a weak model needs the whole range


def test_run_adds_training_curves_and_replaces_only_reports(real_small, tiny_model_file, tmp_path):
    from clearface.report import build_report
    zip_path, labels_path, _ = real_small
    run = tmp_path / "run"
    run.mkdir()
    cols = "epoch,train_loss,val_loss,val_hter,val_far,val_frr,val_eer,val_auc,val_threshold,lr,train_seconds,train_images_per_s,val_seconds,holdout_hter"
    rows = ["1,0.60,0.55,0.30,0.35,0.25,0.29,0.80,0.51,0.001,10,900,1,0.31",  # extra columns are fine
            "2,0.45,0.47,0.20,0.22,0.18,0.19,0.88,0.49,0.0008,10,910,1,0.21",
            "3,0.40,0.48,0.22,0.20,0.24,0.21,0.87,0.52,0.0002,10,905,1,"]
    (run / "summary.csv").write_text(cols + "\n" + "\n".join(rows) + "\n")

    stray = tmp_path / "not_a_report"
    stray.mkdir()
    (stray / "notes.txt").write_text("keep me")
    with pytest.raises(ClearfaceError, match="not a clearface report"):
        build_report(tiny_model_file, zip_path, labels_path, stray, engine="torch", n_boot=50)
    assert (stray / "notes.txt").read_text() == "keep me"

    with pytest.raises(ClearfaceError, match="summary.csv"):
        build_report(tiny_model_file, zip_path, labels_path, tmp_path / "r0", run=tmp_path, engine="torch", n_boot=50)

    out = tmp_path / "r1"
    res = build_report(tiny_model_file, zip_path, labels_path, out, run=run, engine="torch", n_boot=50,
                       n_gallery=4, n_correct=4, n_saliency=4)
    html = (out / "index.html").read_text()
    assert "figures/training.png" in html and (out / "figures" / "training.png").is_file()
    assert res["run"]["epochs"] == 3 and res["run"]["best_epoch"] == 2
    assert res["run"]["best_val_hter"] == pytest.approx(0.20)
    assert len(res["saliency"]["items"]) == 4
    assert res["run"]["last"]["holdout_hter"] is None and "held-out part" in html
    # A previous report is replaced as a whole.
    (out / "img" / "old.png").write_bytes(b"x")
    build_report(tiny_model_file, zip_path, labels_path, out, engine="torch", n_boot=50, n_gallery=2, n_correct=2,
                 n_saliency=0)
    assert not (out / "img" / "old.png").exists()
    assert "figures/training.png" not in (out / "index.html").read_text()
    assert "Skipped" in (out / "index.html").read_text()


def test_cli_report_and_evaluate_report(real_small, tiny_model_file, tmp_path, capsys):
    from clearface.cli import main
    zip_path, labels_path, _ = real_small
    out = tmp_path / "cli_report"
    rc = main(["report", "--model", str(tiny_model_file), "--data", str(zip_path), "--labels", str(labels_path),
               "--out", str(out), "--engine", "torch"])
    assert rc == 0 and (out / "index.html").is_file()
    assert "HTER" in capsys.readouterr().err
    out2 = tmp_path / "eval_report"
    rc = main(["evaluate", "--model", str(tiny_model_file), "--data", str(zip_path), "--labels", str(labels_path),
               "--engine", "torch", "--json", "--report", str(out2)])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out2 / "metrics.json").read_text())
    assert printed["hter"] == saved["headline"]["hter"] and printed["hter_ci95"] == saved["headline"]["hter_ci95"]
    # Errors are one line, exit 2.
    rc = main(["report", "--model", str(tiny_model_file), "--data", str(zip_path), "--labels", str(labels_path),
               "--out", str(tmp_path / "x"), "--run", str(tmp_path / "no_such_run"), "--engine", "torch"])
    assert rc == 2 and "no such run folder" in capsys.readouterr().err


def test_onnx_model_skips_saliency(real_small, tiny_model_file, tmp_path):
    pytest.importorskip("onnxruntime")
    from clearface.export import export_onnx
    from clearface.report import build_report
    zip_path, labels_path, _ = real_small
    onnx_path = tmp_path / "tiny.onnx"
    export_onnx(tiny_model_file, onnx_path)
    res = build_report(onnx_path, zip_path, labels_path, tmp_path / "r", n_boot=50, n_gallery=2, n_correct=2)
    assert res["model"]["format"] == "onnx"
    assert res["saliency"]["items"] == [] and "ONNX" in res["saliency"]["skipped"]
    assert "Grad-CAM needs the PyTorch model file" in (tmp_path / "r" / "index.html").read_text()
