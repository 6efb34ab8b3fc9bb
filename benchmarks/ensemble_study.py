"""Every ensemble (mean score) of finished runs on one split, from their saved score files.

    python benchmarks/ensemble_study.py runs/default_s0 runs/mobilenet_s0 runs/mobilenet96_s0 ... [--min 2] [--max 4]

For each composition: validation AUC and HTER (τ = min-HTER on validation, as `clearface ensemble`
chooses it), then the held-out HTER at that τ with its bootstrap interval, and the held-out AUC.
Sorted by validation AUC, the rule used to pick the shipped ensemble without looking at held-out
data. Nothing is re-scored: the runs' saved validation/held-out scores are averaged, each run
weighted by its number of members exactly as ``clearface ensemble`` weighs them.
"""

from __future__ import annotations

import argparse
import itertools


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--min", type=int, default=1, help="smallest composition size")
    ap.add_argument("--max", type=int, default=None, help="largest composition size (the package holds <= 25 MB)")
    args = ap.parse_args()

    from clearface.calibration import choose_and_score
    from clearface.ensemble import mean_score, member_weights, shared_scores
    from clearface.modelfile import load_model_file
    from clearface.rundir import RunDir

    runs = [RunDir(r) for r in args.runs]
    _, yv, val = shared_scores(runs, "val")
    _, yt, test = shared_scores(runs, "test")
    val, test = dict(zip(runs, val)), dict(zip(runs, test))
    members = {r: load_model_file(r.model_path) for r in runs}
    rows = []
    for k in range(args.min, min(args.max or len(runs), len(runs)) + 1):
        for combo in itertools.combinations(runs, k):
            w = member_weights([members[r] for r in combo])  # as `clearface ensemble` weighs them
            sv, st = mean_score([val[r] for r in combo], w), mean_score([test[r] for r in combo], w)
            res = choose_and_score(sv, yv, "min_hter", "validation split", st, yt)
            v, t = res["val"], res["test"]
            rows.append((" + ".join(r.name for r in combo), v["auc"], v["hter"], t["hter"], *t["hter_ci95"], t["auc"]))
    rows.sort(key=lambda r: -r[1])
    print(f"{len(yv)} validation images choose τ; {len(yt)} held-out images score it\n")
    print("| members | val AUC | val HTER | held-out HTER (95 % CI) | held-out AUC |\n|---|---|---|---|---|")
    for name, vauc, vh, th, lo, hi, tauc in rows:
        print(f"| {name} | {vauc:.4f} | {vh:.4f} | {th:.4f} ({lo:.4f}–{hi:.4f}) | {tauc:.4f} |")


if __name__ == "__main__":
    main()
