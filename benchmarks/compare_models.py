"""Equal-budget comparison of the registry's models and of the imbalance strategies.

Protocol (stated in every table): the first 20,000 images of the 80k set; 4,000 held out (fixed
seed, never trained or calibrated on); 10 % of the rest for validation (tau = min-HTER there);
each run trains for the same wall-clock budget on ONE core (``--minutes``, constant learning
rate, no TTA), then is scored once on the held-out part at its validation tau.

    python benchmarks/compare_models.py --minutes 3 --out runs/compare

Prints a markdown table; results also go to OUT/results.jsonl (one line per finished run, so an
interrupted sweep keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

RUNS = [
    ("cfnet", "pos_weight", {"model": "cfnet", "lr": 2e-3}),
    ("facenet_seed", "pos_weight", {"model": "facenet_seed", "lr": 2e-3}),
    ("capsnet", "margin loss", {"model": "capsnet", "lr": 1e-3, "weight_decay": 0.0}),
    ("vit_small_64", "pos_weight", {"model": "vit_small_64", "lr": 5e-4}),
    ("mobilenet_v2 (ImageNet)", "pos_weight", {"model": "mobilenet_v2", "lr": 5e-4, "model_kwargs": {"pretrained": True}}),
    ("cfnet", "balanced_sampler", {"model": "cfnet", "lr": 2e-3, "imbalance": "balanced_sampler"}),
    ("cfnet", "undersample", {"model": "cfnet", "lr": 2e-3, "imbalance": "undersample"}),
    ("cfnet", "oversample_minority", {"model": "cfnet", "lr": 2e-3, "imbalance": "oversample_minority"}),
    ("cfnet", "focal", {"model": "cfnet", "lr": 2e-3, "imbalance": "focal"}),
    ("cfnet", "soft_hter", {"model": "cfnet", "lr": 2e-3, "imbalance": "soft_hter"}),
    ("cfnet", "none (plain BCE)", {"model": "cfnet", "lr": 2e-3, "imbalance": "none"}),
    # no ImageNet weights offline: the seed's ResNet-50 from scratch, at native 64 px (enlarging
    # the input only pays with pretrained filters), to show what the budget buys without them
    ("resnet50_seed (from scratch, 64 px)", "pos_weight",
     {"model": "resnet50_seed", "lr": 1e-3, "batch_size": 64, "model_kwargs": {"pretrained": False, "input_size": 64}}),
]


def protocol_cfg(over: dict, minutes: float, cache_dir=None) -> dict:
    """The protocol's resolved settings for one row (``over``: the row's own settings)."""
    from clearface.settings import resolve
    cfg = resolve(str(ROOT / "configs" / "default.yaml"), {
        "limit_images": 20000, "holdout": 4000, "epochs": 1000, "max_minutes": minutes,
        "schedule": "constant", "tta": "none", "early_stopping_patience": 0, "track_holdout": False,
        "num_threads": 1, "progress_bar": False, "cache_dir": cache_dir,
        **{k: v for k, v in over.items() if k != "model_kwargs"}})
    # the recipe's model_kwargs belong to cfnet; other models get only their own
    cfg["model_kwargs"] = over.get("model_kwargs", cfg["model_kwargs"] if over["model"] == "cfnet" else {})
    return cfg


def run_one(name: str, imbalance: str, over: dict, run_dir: Path, minutes: float, cache_dir, results: Path) -> dict:
    """Train and score one row; appends its line to ``results`` (an error too) and returns it."""
    import numpy as np
    import torch

    from clearface.data import load_images
    from clearface.engines import TorchEngine
    from clearface.modelfile import load_model_file
    from clearface.rundir import RunDir
    from clearface.train.run import train

    t0 = time.perf_counter()
    try:
        m = train(DATA / "train_img.zip", DATA / "label_train.txt", run_dir, protocol_cfg(over, minutes, cache_dir))
    except Exception as exc:  # keep the sweep going; the table says what failed
        row = {"model": name, "imbalance": imbalance, "error": f"{type(exc).__name__}: {exc}"[:300]}
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
        return row
    run = RunDir(run_dir)
    summary = run.read_summary() if run.summary_path.exists() else {}
    epochs_done = len(summary.get("epoch", []))
    blob = load_model_file(run.model_path)
    engine = TorchEngine(blob)
    scorer = engine.scorer
    torch.set_num_threads(1)
    imgs = load_images(DATA / "train_img.zip", cache_dir=cache_dir, limit=1024).images
    engine.score(imgs[:64])
    t = time.perf_counter()
    engine.score(imgs, batch_size=256)
    infer = len(imgs) / (time.perf_counter() - t)
    params = sum(p.numel() for p in scorer.members[0].parameters())
    row = {"model": name, "imbalance": imbalance, "params": params, "epochs_done": epochs_done,
           "train_images_per_s": float(np.mean(summary["train_images_per_s"])) if epochs_done else None,
           "infer_images_per_s_1core": infer, "holdout_hter": m["test"]["hter"], "holdout_ci95": m["test"]["hter_ci95"],
           "holdout_far": m["test"]["far"], "holdout_frr": m["test"]["frr"], "holdout_auc": m["test"]["auc"],
           "val_hter": m["val"]["hter"], "minutes_total": (time.perf_counter() - t0) / 60}
    with open(results, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--out", default=str(ROOT / "runs" / "compare"))
    ap.add_argument("--only", nargs="*", default=None, help="run indices to do (default all)")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    for i, (name, imbalance, over) in enumerate(RUNS):
        if args.only is not None and str(i) not in args.only:
            continue
        run_dir = out / f"{i:02d}_{over['model']}_{over.get('imbalance', 'pos_weight')}"
        run_one(name, imbalance, over, run_dir, args.minutes, args.cache_dir, results)
    print_table(results, args.minutes)


def print_table(results: Path, minutes: float, runs=None):
    import json
    latest = {}
    for line in results.read_text().splitlines():  # a re-run replaces an earlier (failed) row
        if line.strip():
            r = json.loads(line)
            latest[(r["model"], r["imbalance"])] = r
    order = {(name, imb): i for i, (name, imb, _) in enumerate(runs or RUNS)}
    rows = sorted(latest.values(), key=lambda r: order.get((r["model"], r["imbalance"]), 99))
    print(f"\nBudget: {minutes:g} min of training on 1 CPU core each; 20k-image subset; held-out 4,000; tau on validation.\n")
    print("| model | imbalance | params | epochs done | train img/s (1 core) | infer img/s (1 core) | held-out HTER (95 % CI) | FAR | FRR | AUC |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | {r['imbalance']} | | | | | failed: {r['error']} | | | |")
            continue
        tr = f"{r['train_images_per_s']:.0f}" if r["train_images_per_s"] else "< 1 epoch"
        print(f"| {r['model']} | {r['imbalance']} | {r['params'] / 1e6:.2f} M | {r['epochs_done']} | {tr} | "
              f"{r['infer_images_per_s_1core']:.0f} | {r['holdout_hter']:.4f} ({r['holdout_ci95'][0]:.3f}–{r['holdout_ci95'][1]:.3f}) | "
              f"{r['holdout_far']:.4f} | {r['holdout_frr']:.4f} | {r['holdout_auc']:.4f} |")


if __name__ == "__main__":
    main()
