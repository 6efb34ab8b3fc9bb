"""int8 ONNX (clearface.quantize): scores close to float, metadata carried over, gates computed."""

from __future__ import annotations

import numpy as np
import pytest

from clearface.errors import ClearfaceError


@pytest.fixture(scope="module")
def images(real_small):
    from clearface.data import load_images
    zip_path, _, labels = real_small
    return np.ascontiguousarray(load_images(zip_path, use_cache=False).images), labels


@pytest.fixture(scope="module")
def float_onnx(tiny_model_file, tmp_path_factory):
    from clearface.export import export_onnx
    out = tmp_path_factory.mktemp("float") / "tiny.onnx"
    export_onnx(tiny_model_file, out)
    return out


@pytest.fixture(scope="module")
def int8_onnx(float_onnx, images, tmp_path_factory):
    from clearface.quantize import quantize_onnx
    out = tmp_path_factory.mktemp("int8") / "tiny.int8.onnx"
    meta = quantize_onnx(float_onnx, out, images[0][:64])
    return out, meta


def test_int8_graph_is_quantised_and_scores_close_to_float(float_onnx, int8_onnx, images):
    import onnx

    from clearface.engines import OnnxEngine
    path, _ = int8_onnx
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    x = images[0][64:]
    fe, qe = OnnxEngine(float_onnx, threads=1), OnnxEngine(path, threads=1)
    assert (fe.info["engine"], qe.info["engine"]) == ("onnx", "onnx-int8")
    f, q = fe.score(x), qe.score(x)
    assert q.shape == f.shape and q.dtype == np.float32
    assert np.all((q >= 0) & (q <= 1))
    assert np.abs(q - f).mean() < 0.02 and np.abs(q - f).max() < 0.1
    assert not np.array_equal(q, f)  # really computed in int8


def test_metadata_carried_over_and_threshold_restamped(float_onnx, int8_onnx):
    from clearface.engines import OnnxEngine
    from clearface.export import read_metadata
    from clearface.quantize import set_threshold
    path, meta = int8_onnx
    src = read_metadata(float_onnx)
    got = read_metadata(path)
    for key in ("format", "threshold", "preprocess", "classes", "members", "tta"):
        assert got[key] == src[key]
    q = got["quantization"]
    assert q["format"] == "qdq" and q["per_channel"] and q["calibration_images"] == 64
    assert meta["quantization"] == q
    set_threshold(path, 0.42, "min_hter on test images, int8 scores")
    eng = OnnxEngine(path, threads=1)
    assert eng.info["threshold"] == 0.42 and eng.meta["float_threshold"] == src["threshold"]
    assert "int8" in eng.info["threshold_source"]
    with pytest.raises(ClearfaceError, match="threshold"):
        set_threshold(path, float("nan"), "x")
    assert OnnxEngine(path, threads=1).info["threshold"] == 0.42  # refused: file untouched


def test_bad_calibration_input_is_refused_without_output(float_onnx, images, tmp_path):
    from clearface.quantize import quantize_onnx
    out = tmp_path / "q.onnx"
    with pytest.raises(ClearfaceError, match="uint8"):
        quantize_onnx(float_onnx, out, images[0][:8].astype(np.float32))
    with pytest.raises(ClearfaceError, match=".onnx"):
        quantize_onnx(float_onnx, tmp_path / "q.bin", images[0][:8])
    assert list(tmp_path.iterdir()) == []


def test_gates_computed_from_scores():
    from clearface.quantize import int8_gates
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.8).astype(np.int8)
    s = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.2, y.size), 0, 1).astype(np.float32)
    val, test, unl = slice(0, 1500), slice(1500, 3000), slice(3000, 4000)
    same = int8_gates(y[val], s[val], s[val], y[test], s[test], s[test], s[unl], s[unl], None, 2.0)
    assert same["passes"] and same["agreement"] == 1.0 and same["hter_shift"] == 0.0
    noisy = np.clip(s + rng.normal(0, 0.15, s.size), 0, 1)
    g = int8_gates(y[val], s[val], noisy[val], y[test], s[test], noisy[test], s[unl], noisy[unl], None, 1.2)
    assert not g["passed"]["speedup"] and not g["passed"]["agreement"] and not g["passes"]
    assert g["agreement"] < 0.995 and g["int8"]["threshold"] == g["threshold"]
    assert "held-out" in g["int8"]["test_protocol"]


def test_cli_export_int8_rechooses_tau_on_calibration_labels(tiny_model_file, real_small, tmp_path, capsys):
    import json

    from clearface.cli import main
    from clearface.export import read_metadata
    zip_path, labels_path, _ = real_small
    out = tmp_path / "tiny.int8.onnx"
    assert main(["export", "--int8", "--model", str(tiny_model_file), "--out", str(out)]) == 2
    assert "--calib-data" in capsys.readouterr().err and not out.exists()
    assert main(["export", "--int8", "--model", str(tiny_model_file), "--out", str(out), "--calib-data",
                 str(zip_path), "--calib-labels", str(labels_path), "--calib-images", "64", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    meta = read_metadata(out)
    assert meta["quantization"]["calibration_images"] == 64 == result["quantization"]["calibration_images"]
    assert "int8 scores" in meta["threshold_source"] and meta["float_threshold"] == 0.5
    assert 0 <= meta["threshold"] <= 1


def test_calibration_ranges_cover_every_batch(float_onnx, images, tmp_path):
    """MinMax ranges are the min and max over all calibration images, however they are batched.
    (onnxruntime 1.32's CalibMaxIntermediateOutputs dropped all but the last batches, or raised.)"""
    import onnx
    from onnx import numpy_helper

    from clearface.quantize import quantize_onnx
    x = np.concatenate([images[0][:2], np.zeros((8, 3, 64, 64), np.uint8)])  # the range is all in batch 1

    def scales(batch_size):
        out = tmp_path / f"b{batch_size}.onnx"
        quantize_onnx(float_onnx, out, x, batch_size=batch_size)
        g = onnx.load(str(out)).graph
        init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        return [init[n.input[1]] for n in g.node if n.op_type == "QuantizeLinear" and n.input[1] in init]

    in_batches, at_once = scales(2), scales(10)  # 5 batches of 2 vs one batch of 10
    assert len(in_batches) == len(at_once) > 0
    for a, b in zip(in_batches, at_once):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_percentile_calibration_tightens_ranges_and_is_recorded(float_onnx, images, tmp_path):
    """``percentile`` reaches onnxruntime's calibrator: a lower one clips more, so no activation scale
    grows and some shrink; the setting is stored; a value outside (0, 100] is refused before writing."""
    import onnx
    from onnx import numpy_helper

    from clearface.export import read_metadata
    from clearface.quantize import quantize_onnx
    x = images[0][:32]

    def scales(pct):
        out = tmp_path / f"p{pct}.onnx"
        quantize_onnx(float_onnx, out, x, calibration="percentile", percentile=pct, batch_size=16)
        g = onnx.load(str(out)).graph
        init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        acts = {n.input[0]: float(init[n.input[1]]) for n in g.node
                if n.op_type == "QuantizeLinear" and n.input[1] in init and init[n.input[1]].size == 1}
        return acts, read_metadata(out)["quantization"]

    wide, meta = scales(100.0)
    tight, _ = scales(99.0)
    assert meta["calibration"] == "percentile" and meta["percentile"] == 100.0
    assert wide.keys() == tight.keys() and wide
    assert all(tight[k] <= wide[k] * (1 + 1e-6) for k in wide)
    assert sum(tight[k] < wide[k] * 0.95 for k in wide) >= len(wide) // 2
    with pytest.raises(ClearfaceError, match="percentile"):
        quantize_onnx(float_onnx, tmp_path / "bad.onnx", x, calibration="percentile", percentile=0)
    assert not (tmp_path / "bad.onnx").exists()


def test_cli_export_int8_calibration_settings_reach_the_file(tiny_model_file, real_small, tmp_path, capsys):
    from clearface.cli import main
    from clearface.export import read_metadata
    zip_path, _, _ = real_small
    out = tmp_path / "tiny.int8.onnx"
    base = ["export", "--int8", "--model", str(tiny_model_file), "--out", str(out), "--calib-data", str(zip_path),
            "--calib-images", "32", "--calib-method", "percentile"]
    assert main(base + ["--calib-percentile", "0"]) == 2
    err = capsys.readouterr().err
    assert "percentile" in err and "Traceback" not in err and not out.exists()
    assert main(base + ["--calib-percentile", "99.9", "--full-range"]) == 0
    q = read_metadata(out)["quantization"]
    assert (q["calibration"], q["percentile"], q["reduce_range"]) == ("percentile", 99.9, False)
