"""kill -9 at random points of ``clearface predict``: outputs are whole or absent, a rerun is byte-identical.

The engine is the default (auto: a cached ONNX export), so kills also land inside the export and
the next run must not trust a half-written one.
"""

import time

import pytest

from conftest import real_slice, write_zip
from faultkit import fault_rng, kill_after, no_orphans, spawn, temp_files

KILLS = 3


def _predict(model, zpath, out, cache):
    return ["-m", "clearface.cli", "predict", "--model", model, "--data", zpath, "--out", out / "labels.txt",
            "--scores", out / "scores.csv", "--cache-dir", cache]


@pytest.mark.slow
def test_kill9_during_predict_leaves_whole_outputs_and_a_rerun_is_identical(tiny_model_file, tmp_path):
    blobs, _ = real_slice(600)
    zpath = write_zip(tmp_path / "faces.zip", blobs, "train_img")
    rng, seed = fault_rng()

    ref = tmp_path / "reference"
    ref.mkdir()
    t0 = time.monotonic()
    p = spawn(_predict(tiny_model_file, zpath, ref, tmp_path / "ref-cache"), tmp_path / "reference.log")
    assert p.wait(timeout=300) == 0, (tmp_path / "reference.log").read_text()[-3000:]
    span = time.monotonic() - t0
    expected = {name: (ref / name).read_bytes() for name in ("labels.txt", "scores.csv")}

    out, cache, log, injected = tmp_path / "out", tmp_path / "cache", tmp_path / "faulted.log", 0
    out.mkdir()
    for _ in range(2 * KILLS):
        if injected == KILLS:
            break
        p, t0 = spawn(_predict(tiny_model_file, zpath, out, cache), log), time.monotonic()
        if kill_after(p, rng.uniform(0.2, 0.9) * span):
            injected += 1
        else:  # finished first (the export is cached now): aim earlier next time
            assert p.returncode == 0, log.read_text()[-3000:]
            span = time.monotonic() - t0
        assert no_orphans(p.pid) == []
        for name, data in expected.items():  # never half a file
            assert not (out / name).exists() or (out / name).read_bytes() == data, name
        for f in out.iterdir():
            f.unlink() if f.is_file() else None
    p = spawn(_predict(tiny_model_file, zpath, out, cache), log)
    assert p.wait(timeout=300) == 0, log.read_text()[-3000:]
    print(f"predict: {injected} kill -9 injected (seed {seed}), rerun identical")
    assert injected >= 1
    for name, data in expected.items():
        assert (out / name).read_bytes() == data, name
    assert temp_files(cache) == []
