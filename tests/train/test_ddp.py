"""Two CPU processes (gloo DDP) give the one-process result: sharding, gathering, rank-0 writing."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from clearface.modelfile import load_model_file
from clearface.train.checkpoints import read_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def train(zpath, lpath, out, cache, *extra):
    cmd = [sys.executable, "-m", "clearface.cli", "train", "--data", str(zpath), "--labels", str(lpath),
           "--out", str(out), "--config", str(ROOT / "configs" / "smoke.yaml"), "--cache-dir", str(cache),
           "--limit_images", "300", "--holdout", "60", "--epochs", "2", "--batch_size", "32",
           "--augment", "{flip: false, translate: 0, scale: [1.0, 1.0], rotate: 0, brightness: 0, contrast: 0, saturation: 0, grayscale: 0}",
           "--progress_bar", "false", "--num_threads", "1", *extra]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("averaged", [False, True], ids=["raw", "ema"])
def test_two_process_gloo_matches_one_process(real_small, tmp_path, averaged):
    # With --ema-decay the average is a submodule the optimiser never sees: each rank updates its own copy
    # from the all-reduced weights, so the copies must stay equal (checked below).
    zpath, lpath, _ = real_small
    ema = ("--ema-decay", "0.9") if averaged else ()
    one = train(zpath, lpath, tmp_path / "one", tmp_path / "cache", *ema)
    two = train(zpath, lpath, tmp_path / "two", tmp_path / "cache", "--strategy", "ddp", "--devices", "2", *ema)
    assert sorted(p.name for p in (tmp_path / "two").glob("*.pt")) == ["model.pt"]
    split = list(csv.DictReader(open(tmp_path / "two" / "split.csv")))
    n_val = sum(r["part"] == "val" for r in split)
    # tau calibrated on exactly the validation set: every image once, no DistributedSampler padding
    assert two["val"]["n"] == n_val == one["val"]["n"]
    vs = list(csv.DictReader(open(tmp_path / "two" / "val_scores.csv")))
    assert len(vs) == n_val and len({r["name"] for r in vs}) == n_val
    # Same global batches and steps; only batch-norm statistics (per-rank batches) and float
    # summation order differ, so scores agree closely though not bit for bit.
    s1 = np.array([float(r["score"]) for r in csv.DictReader(open(tmp_path / "one" / "val_scores.csv"))])
    s2 = np.array([float(r["score"]) for r in vs])
    # Stated tolerance: mean |score difference| < 0.02 and max < 0.1 (seen here: 0.006 and 0.015).
    # (Ranking metrics such as AUC are not compared: a 2-epoch model scores nearly all images
    # alike, so tiny score differences reorder them.)
    assert np.abs(s1 - s2).mean() < 0.02 and np.abs(s1 - s2).max() < 0.1
    rows = list(csv.DictReader(open(tmp_path / "two" / "summary.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    best = read_checkpoint(tmp_path / "two" / "checkpoints" / "best.ckpt")
    # The epoch was chosen on scores gathered from both ranks' halves of validation; val_scores.csv is rank 0
    # scoring the stored model alone. They agree only if rank 1 scored with the same weights (a rank whose
    # average lagged would choose on other scores).
    chosen = next(r for r in rows if int(r["epoch"]) == best["epoch"])
    assert abs(roc_auc_score([int(r["label"]) for r in vs], s2) - float(chosen["val_auc"])) < 1e-5
    if averaged:  # rank 0 wrote the average, not the raw weights
        stored = load_model_file(tmp_path / "two" / "model.pt")["members"][0]["state_dict"]
        assert all(torch.equal(stored[k], best["state_dict"][f"ema.module.{k}"]) for k in stored)
