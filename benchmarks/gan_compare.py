"""gan_oversample against oversample_minority and pos_weight, at compare_models.py's equal budget.

Same protocol as :mod:`compare_models` (first 20,000 images, 4,000 held out, tau = min-HTER on the
10 % validation part, N minutes of training on ONE core, constant lr, no TTA, cfnet); the three
runs share one split. Steps, in order:

    python benchmarks/gan_compare.py split --out /work/runs/gan_compare
    clearface gan --run /work/runs/gan_compare/split --data ../shared/data/train_img.zip \
        --labels ../shared/data/label_train.txt --out /work/runs/gan --epochs 30 --max-minutes 24 --num-threads 1
    python benchmarks/gan_compare.py compare --out /work/runs/gan_compare --generator /work/runs/gan/generator.pt

``split`` writes the protocol's split (what ``train`` would draw for it) without training, so the
GAN can be trained on its training part first; ``compare`` checks that every run drew that same
split, and ``train`` itself refuses a generator that saw any validation/held-out image.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_models import DATA, ROOT, RUNS, print_table, protocol_cfg, run_one  # noqa: E402

GAN_RUNS = [RUNS[0], RUNS[7],  # cfnet pos_weight, cfnet oversample_minority
            ("cfnet", "gan_oversample", {"model": "cfnet", "lr": 2e-3, "imbalance": "gan_oversample"})]


def write_split(out: Path, cache_dir=None) -> Path:
    from clearface.data import load_labelled
    from clearface.data.split import make_split
    from clearface.rundir import RunDir
    cfg = protocol_cfg({"model": "cfnet"}, 1.0, cache_dir)
    s, y = load_labelled(DATA / "train_img.zip", DATA / "label_train.txt", limit=cfg["limit_images"],
                         cache_dir=cache_dir)
    split_seed = cfg["seed"] if cfg.get("split_seed") is None else cfg["split_seed"]
    parts = make_split(y, s.hashes, cfg["val_fraction"], cfg["holdout"], split_seed, cfg["holdout_seed"], cfg["folds"])
    run = RunDir(out / "split").create()
    run.write_split(s.names, y, parts)
    print({p: int((parts == p).sum()) for p in ("train", "val", "test")},
          "class 0 in train:", int(((parts == "train") & (y == 0)).sum()))
    return run.split_path


def paired_hter_diff_ci(run_a: Path, run_b: Path, n_boot: int = 2000, seed: int = 0):
    """HTER(b) - HTER(a) on the same held-out images, each run at its own validation tau (95 % CI)."""
    from clearface.metrics import paired_hter_diff
    from clearface.rundir import RunDir
    (names_a, y, s_a), (names_b, _, s_b) = RunDir(run_a).read_scores("test"), RunDir(run_b).read_scores("test")
    assert names_a == names_b, "the runs scored different held-out images"
    tau_a, tau_b = RunDir(run_a).read_metrics()["threshold"], RunDir(run_b).read_metrics()["threshold"]
    return paired_hter_diff(s_a, tau_a, s_b, tau_b, y, n_boot, seed)


def print_paired(out: Path) -> None:
    runs = {imb: out / f"{i:02d}_cfnet_{imb}" for i, (_, imb, _) in enumerate(GAN_RUNS)}
    if not all((r / "test_scores.csv").exists() for r in runs.values()):
        return
    print("\nPaired on the same held-out images (each run at its own validation tau):")
    for base in ("pos_weight", "oversample_minority"):
        d, lo, hi = paired_hter_diff_ci(runs[base], runs["gan_oversample"])
        print(f"  HTER(gan_oversample) - HTER({base}) = {d:+.4f} (95 % CI {lo:+.4f} to {hi:+.4f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["split", "compare", "table"])
    ap.add_argument("--out", default=str(ROOT / "runs" / "gan_compare"))
    ap.add_argument("--generator", default=None)
    ap.add_argument("--ratio", type=float, default=None, help="gan.ratio (default: the setting's default)")
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--only", nargs="*", default=None, help="indices into the three runs (default all)")
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()
    out = Path(args.out)
    if args.step == "split":
        write_split(out, args.cache_dir)
        return
    results = out / "results.jsonl"
    if args.step == "compare":
        from clearface.outputs import file_sha256
        split = file_sha256(out / "split" / "split.csv")
        for i, (name, imbalance, over) in enumerate(GAN_RUNS):
            if args.only is not None and str(i) not in args.only:
                continue
            if imbalance == "gan_oversample":
                over = {**over, "gan": {"generator": args.generator,
                                        **({"ratio": args.ratio} if args.ratio is not None else {})}}
            run_dir = out / f"{i:02d}_cfnet_{imbalance}"
            row = run_one(name, imbalance, over, run_dir, args.minutes, args.cache_dir, results)
            if "error" not in row and file_sha256(run_dir / "split.csv") != split:
                raise SystemExit(f"{run_dir}: drew another split than {out / 'split'}")
    print_table(results, args.minutes, GAN_RUNS)
    print_paired(out)
    print("\n" + json.dumps({"split": str(out / "split" / "split.csv")}))


if __name__ == "__main__":
    main()
