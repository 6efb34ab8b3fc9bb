"""Inference-side ablations of a finished run, on its held-out part, tau always from validation:

* threshold rule: min-HTER tau vs EER tau vs the naive 0.5;
* test-time augmentation: none vs horizontal flip (tau re-chosen on validation for each).

    python benchmarks/quality_ablation.py --run runs/default_s0 [--model runs/default_s0/model.pt]

Prints a markdown table with bootstrap 95 % intervals.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default=str(DATA / "train_img.zip"))
    ap.add_argument("--labels", default=str(DATA / "label_train.txt"))
    args = ap.parse_args()

    from clearface import metrics
    from clearface.calibration import fit_threshold
    from clearface.data import load_labelled
    from clearface.engines import TorchEngine
    from clearface.modelfile import load_model_file
    from clearface.rundir import RunDir

    run = RunDir(args.run)
    blob = load_model_file(args.model or run.model_path)
    s, y = load_labelled(args.data, args.labels)
    parts = run.read_split(s.names)
    val, test = np.flatnonzero(parts == "val"), np.flatnonzero(parts == "test")
    rows = []
    for tta in ("none", "flip"):
        b = copy.copy(blob)
        b["tta"] = tta
        engine = TorchEngine(b)
        sv, st = engine.score(s.images[val]), engine.score(s.images[test])
        rules = [("min-HTER", fit_threshold(sv, y[val], "min_hter")),
                 ("EER", fit_threshold(sv, y[val], "eer")), ("0.5 (naive)", 0.5)]
        for rule, tau in rules:
            m = metrics.summarize(st, y[test], tau)
            lo, hi = metrics.bootstrap_hter(st, y[test], tau)
            rows.append((tta, rule, tau, m.far, m.frr, m.hter, lo, hi))
    print(f"run {run}; tau chosen on {len(val)} validation images; scored on {len(test)} held-out images\n")
    print("| TTA | tau rule | tau | FAR | FRR | HTER | 95 % CI |\n|---|---|---|---|---|---|---|")
    for tta, rule, tau, far, frr, h, lo, hi in rows:
        print(f"| {tta} | {rule} | {tau:.4f} | {far:.4f} | {frr:.4f} | {h:.4f} | {lo:.4f}–{hi:.4f} |")


if __name__ == "__main__":
    main()
