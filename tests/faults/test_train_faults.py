"""kill -9 at random points of a tiny training run, resume, and get the uninterrupted run bit for bit.

The tiny run: 600 real images, a cfnet of width 8 scheduled for 8 epochs, early stopping with
patience 1 (on these images it stops after epoch 3) and a mid-epoch checkpoint about every 0.3 s,
so kills land before, between and inside checkpoints, mid-epoch and at epoch ends. After the first kill the run folder is copied elsewhere and the
original deleted: the copy must resume from its own files.
"""

import shutil

import pytest

from conftest import real_slice, write_labels, write_zip
from faultkit import (ROOT, fault_rng, kill_after, model_differences, no_orphans, spawn, summary_rows,
                      temp_files, wait_until)

KILLS = 3


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("fault_data")
    blobs, labels = real_slice(600)
    return write_zip(d / "faces.zip", blobs, "train_img"), write_labels(d / "labels.txt", labels), d


def _train_args(zpath, lpath, out, cache, resume=False):
    return ["-m", "clearface.cli", "train", "--data", zpath, "--labels", lpath, "--out", out,
            *(["--resume"] if resume else
              ["--config", ROOT / "configs" / "smoke.yaml", "--limit-images", "600", "--holdout", "100",
               "--epochs", "8", "--batch-size", "32", "--model-kwargs", "{width: 8, depths: [1, 1, 1, 1]}",
               "--early-stopping-patience", "1", "--checkpoint-minutes", "0.005", "--num-threads", "1"]),
            "--progress-bar", "false", "--cache-dir", cache]


def _fits_started(run) -> int:
    log = run / "train.log"
    return log.read_text().count(" val ") if log.exists() else 0  # "<fold>: train N (...), val M; ..."


def _resume_point(run):
    """(epoch, batch) the killed run's last.ckpt continues from; None before the first checkpoint."""
    import torch
    f = run / "checkpoints" / "last.ckpt"
    if not f.exists():
        return None
    state = torch.load(f, weights_only=True).get("FaceDataModule", {})
    return state.get("resume_epoch"), state.get("resume_batch")


@pytest.mark.slow
def test_kill9_anywhere_then_resume_gives_the_uninterrupted_run(tiny_data, tmp_path):
    import time
    zpath, lpath, d = tiny_data
    cache = d / "cache"
    rng, seed = fault_rng()

    ref = tmp_path / "reference"
    p = spawn(_train_args(zpath, lpath, ref, cache), tmp_path / "reference.log")
    wait_until(lambda: _fits_started(ref) > 0, p)
    t0 = time.monotonic()
    assert p.wait(timeout=600) == 0, (tmp_path / "reference.log").read_text()[-3000:]
    span = time.monotonic() - t0  # training + calibration + model file, without imports and data

    run, injected, log, points = tmp_path / "run", 0, tmp_path / "faulted.log", []
    args = _train_args(zpath, lpath, run, cache)
    for attempt in range(KILLS):
        started = _fits_started(run)
        p = spawn(args, log)
        if not wait_until(lambda: _fits_started(run) > started, p):
            break  # the run finished before training (nothing left to do)
        # the first kill always lands inside training; later ones anywhere up to the end
        delay = rng.uniform(0, span * (0.7 if attempt == 0 else 1.0))
        if not kill_after(p, delay):
            assert p.returncode == 0, log.read_text()[-3000:]
            break
        injected += 1
        assert no_orphans(p.pid) == []
        points.append(_resume_point(run))
        if attempt == 0:  # continue in a copy; the original must not be needed
            copy = tmp_path / "copied-run"
            shutil.copytree(run, copy, symlinks=True)
            shutil.rmtree(run)
            run = copy
        args = _train_args(zpath, lpath, run, cache, resume=True)
    else:
        p = spawn(args, log)
        assert p.wait(timeout=600) == 0, log.read_text()[-3000:]
    print(f"train: {injected} kill -9 injected (seed {seed}), resumed from (epoch, batch) {points}")
    assert injected >= 1

    assert summary_rows(run) == summary_rows(ref)
    assert model_differences(run / "model.pt", ref / "model.pt") == []
    import torch
    for name in ("best.ckpt", "last.ckpt"):
        a, b = (torch.load(r / "checkpoints" / name, weights_only=True) for r in (run, ref))
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in b["state_dict"]), name
    assert temp_files(run) == []
    assert (run / "val_scores.csv").read_bytes() == (ref / "val_scores.csv").read_bytes()

    # Killed after the last checkpoint but before the model file (e.g. just after early stopping
    # decided): the resume must only finish the run, not train further epochs.
    tail = tmp_path / "killed-at-the-end"
    shutil.copytree(ref, tail)
    (tail / "model.pt").unlink()
    (tail / "metrics.json").unlink()
    p = spawn(_train_args(zpath, lpath, tail, cache, resume=True), tmp_path / "tail.log")
    assert p.wait(timeout=600) == 0, (tmp_path / "tail.log").read_text()[-3000:]
    assert summary_rows(tail) == summary_rows(ref)
    assert model_differences(tail / "model.pt", ref / "model.pt") == []
