"""One short real training run through the CLI: train -> calibrate -> evaluate -> predict -> resume."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from clearface import metrics

ROOT = Path(__file__).resolve().parents[2]


def cli(*args):
    res = subprocess.run([sys.executable, "-m", "clearface.cli", *map(str, args)], capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.mark.slow
def test_smoke_recipe_end_to_end(real_small, tmp_path):
    zpath, lpath, labels = real_small
    run = tmp_path / "run"
    cli("train", "--data", zpath, "--labels", lpath, "--out", run, "--config", ROOT / "configs" / "smoke.yaml",
        "--cache-dir", tmp_path / "cache", "--limit_images", "300", "--holdout", "60", "--epochs", "3", "--stop_after", "2",
        "--progress_bar", "false")
    for f in ("config.yaml", "split.csv", "summary.csv", "train.log", "metrics.json", "model.pt",
              "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (run / f).exists(), f
    assert list((run / "tb").rglob("events.out.tfevents*"))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["epochs"] == 3 and cfg["holdout"] == 60
    rows = list(csv.DictReader(open(run / "summary.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[0]["train_images_per_s"]) > 0

    m = json.loads((run / "metrics.json").read_text())
    split = list(csv.DictReader(open(run / "split.csv")))
    n_val = sum(r["part"] == "val" for r in split)
    n_test = sum(r["part"] == "test" for r in split)
    assert m["val"]["n"] == n_val and m["test"]["n"] == n_test
    # tau is the min-HTER threshold of the validation scores, and test is scored at that tau
    val = list(csv.DictReader(open(run / "val_scores.csv")))
    vs, vy = np.array([float(r["score"]) for r in val]), np.array([int(r["label"]) for r in val])
    assert m["threshold"] == pytest.approx(metrics.min_hter_threshold(vs, vy))
    assert {r["name"] for r in val}.isdisjoint({r["name"] for r in split if r["part"] != "val"})

    import torch
    blob = torch.load(run / "model.pt", weights_only=True)
    assert blob["threshold"] == pytest.approx(m["threshold"]) and blob["config"]["epochs"] == 3
    assert blob["preprocess"]["size"] == 64 and blob["classes"]["1"] == "clean face"
    ck = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)  # tensors and plain data only
    assert {"state_dict", "optimizer_states", "lr_schedulers", "epoch"} <= set(ck)
    assert ck["hyper_parameters"]["cfg"]["epochs"] == 3
    # stopped after epoch 2: the next batch to run is epoch index 2, batch 0
    assert ck["FaceDataModule"] == {"resume_epoch": 2, "resume_batch": 0}
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["epoch"] in (1, 2) and set(best["state_dict"]) == set(ck["state_dict"])
    # metrics.json names the epoch the model file holds: the first with the lowest validation HTER
    assert m["best_epoch"] == best["epoch"] == int(min(rows, key=lambda r: float(r["val_hter"]))["epoch"])

    ev = json.loads(cli("evaluate", "--model", run / "model.pt", "--data", zpath, "--labels", lpath, "--json").stdout)
    assert ev["threshold"] == pytest.approx(m["threshold"]) and ev["n"] == 300
    out = tmp_path / "pred.txt"
    cli("predict", "--model", run, "--data", zpath, "--out", out)
    assert len(out.read_text().splitlines()) == 300

    # the run was cut after 2 of 3 epochs; --resume continues from last.ckpt with the same schedule
    cli("train", "--data", zpath, "--labels", lpath, "--out", run, "--resume", "--stop_after", "null",
        "--cache-dir", tmp_path / "cache", "--progress_bar", "false")
    rows = list(csv.DictReader(open(run / "summary.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
