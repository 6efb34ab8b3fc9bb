"""Held-out HTER against training minutes, from a run's ``summary.csv`` (``track_holdout: true``).

    python benchmarks/time_to_quality.py runs/default_s0 [--png docs/time_to_quality.png]

Each epoch's held-out HTER is measured at that epoch's validation tau; nothing in training reads it.
Besides the measured wall-clock minutes (which include any time the CPU was shared with other
jobs), it prints "idle-CPU minutes": epochs x the median epoch time of the run, the time the same
epochs take on an otherwise idle 2-core machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--png", default=None)
    args = ap.parse_args()
    from clearface.rundir import RunDir
    series = []
    for run in args.runs:
        summary = RunDir(run).read_summary()
        sec = summary["train_seconds"] + summary["val_seconds"]
        idle = np.cumsum(np.full(len(sec), np.median(sec))) / 60
        wall = np.cumsum(sec) / 60
        h = summary.get("holdout_hter", np.full(len(sec), np.nan))
        series.append((run, idle, wall, h))
        print(f"\n{run}: median epoch {np.median(sec) / 60:.2f} min (train + validation)\n")
        print("| epoch | idle-CPU minutes | measured minutes | held-out HTER | val HTER |\n|---|---|---|---|---|")
        for ep, a, b, x, v in zip(summary["epoch"], idle, wall, h, summary["val_hter"]):
            print(f"| {int(ep)} | {a:.1f} | {b:.1f} | {x:.4f} | {v:.4f} |")
    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6.4, 4))
        for run, idle, wall, h in series:
            ax.plot(idle, h, "o-", label=f"{Path(run).name} (held-out, tau from validation)")
        ax.axhline(0.085, color="grey", ls="--", lw=1)
        ax.axvline(15, color="grey", ls=":", lw=1)
        ax.set_xlabel("training minutes on 2 CPU cores (idle machine)")
        ax.set_ylabel("held-out HTER")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
        print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
