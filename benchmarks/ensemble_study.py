"""Every ensemble (mean score) of finished runs on one split, from their saved score files.

    python benchmarks/ensemble_study.py runs/default_s0 runs/mobilenet_s0 runs/mobilenet96_s0 ... [--min 2] [--max 4]

For each composition: validation AUC and HTER (τ = min-HTER on validation, as `clearface ensemble`
chooses it), then the held-out HTER at that τ with its bootstrap interval, and the held-out AUC.
Sorted by validation AUC, the rule used to pick the shipped ensemble without looking at held-out
data. Nothing is re-scored: the runs' ``val_scores.csv``/``test_scores.csv`` are averaged.
"""

from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path

import numpy as np


def _load(path: Path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["name"] for r in rows], np.array([int(r["label"]) for r in rows]), np.array([float(r["score"]) for r in rows])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--min", type=int, default=1, help="smallest composition size")
    ap.add_argument("--max", type=int, default=None, help="largest composition size (the package holds <= 25 MB)")
    args = ap.parse_args()

    from clearface import metrics

    runs = [Path(r) for r in args.runs]
    val = {r: _load(r / "val_scores.csv") for r in runs}
    test = {r: _load(r / "test_scores.csv") for r in runs}
    for r in runs[1:]:
        if val[r][0] != val[runs[0]][0] or test[r][0] != test[runs[0]][0]:
            raise SystemExit(f"{r}: different validation/held-out images than {runs[0]} (train with the same split_seed)")
    yv, yt = val[runs[0]][1], test[runs[0]][1]
    rows = []
    for k in range(args.min, min(args.max or len(runs), len(runs)) + 1):
        for combo in itertools.combinations(runs, k):
            sv = np.mean([val[r][2] for r in combo], 0)
            st = np.mean([test[r][2] for r in combo], 0)
            tau = metrics.min_hter_threshold(sv, yv)
            lo, hi = metrics.bootstrap_hter(st, yt, tau)
            rows.append((" + ".join(r.name for r in combo), metrics.roc_auc(sv, yv), metrics.hter(sv, yv, tau),
                         metrics.hter(st, yt, tau), lo, hi, metrics.roc_auc(st, yt)))
    rows.sort(key=lambda r: -r[1])
    print(f"{len(yv)} validation images choose τ; {len(yt)} held-out images score it\n")
    print("| members | val AUC | val HTER | held-out HTER (95 % CI) | held-out AUC |\n|---|---|---|---|---|")
    for name, vauc, vh, th, lo, hi, tauc in rows:
        print(f"| {name} | {vauc:.4f} | {vh:.4f} | {th:.4f} ({lo:.4f}–{hi:.4f}) | {tauc:.4f} |")


if __name__ == "__main__":
    main()
