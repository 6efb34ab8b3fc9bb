"""Model files side by side on the same held-out images, each at its own stored tau, paired against the first.

    python benchmarks/heldout_compare.py default runs/distill/student/model.pt [more model files]

The held-out (``test``) part of the 80k is rebuilt from the settings stored in the first model
file (``clearface.data.split.split_from_config``); every other model must rebuild the same part
(else it was trained or calibrated on some of those images, and the script stops). tau is each
model's stored one (chosen on validation); nothing is tuned on the held-out images. Prints a
markdown table: validation AUC/HTER as stored in the file (what a choice between models may use),
held-out HTER with its bootstrap interval, FAR, FRR, AUC, and HTER minus the first model's on the
same images with a paired bootstrap interval.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model files or packaged names (default, ensemble); the first is the reference")
    ap.add_argument("--data", default=str(DATA / "train_img.zip"))
    ap.add_argument("--labels", default=str(DATA / "label_train.txt"))
    ap.add_argument("--engine", default="auto", choices=("auto", "torch", "onnx"))
    args = ap.parse_args(argv)

    from clearface import metrics
    from clearface.data import load_labelled
    from clearface.data.split import TEST, split_from_config
    from clearface.engines import load_engine
    from clearface.modelfile import load_model_file

    imageset, y = load_labelled(args.data, args.labels)
    blobs = [load_model_file(m) for m in args.models]
    parts = [split_from_config(b["config"], imageset.hashes, y) for b in blobs]
    test = np.flatnonzero(parts[0] == TEST)
    for m, p in zip(args.models[1:], parts[1:]):
        if not np.array_equal(np.flatnonzero(p == TEST), test):
            raise SystemExit(f"{m}: its settings hold out other images than {args.models[0]}'s: not comparable")
    yt = y[test]
    rows, ref = [], None
    for m, blob in zip(args.models, blobs):
        scores = load_engine(m, args.engine, blob=blob).score(imageset.images[test])
        tau = float(blob["threshold"])
        s = metrics.summarize_with_ci(scores, yt, tau)
        if ref is None:
            ref = (scores, tau)
            diff = "(reference)"
        else:
            d, lo, hi = metrics.paired_hter_diff(ref[0], ref[1], scores, tau, yt)
            diff = f"{d:+.4f} ({lo:+.4f} to {hi:+.4f})"
        val = (blob.get("metrics") or {}).get("val") or {}
        rows.append((m, f"{tau:.4f}", f"{val.get('auc', float('nan')):.4f}", f"{val.get('hter', float('nan')):.4f}",
                     f"**{s['hter']:.4f}** ({s['hter_ci95'][0]:.4f}–{s['hter_ci95'][1]:.4f})",
                     f"{s['far']:.4f}", f"{s['frr']:.4f}", f"{s['auc']:.4f}", diff))
    print(f"\nHeld-out part of {Path(args.data).name}: {len(test)} images ({int((yt == 0).sum())} class 0), "
          f"split rebuilt from {args.models[0]}'s settings; tau: each model's stored one, chosen on validation.\n")
    print("| model | tau | validation AUC | validation HTER | held-out HTER (95 % CI) | FAR | FRR | AUC | "
          "HTER − first, paired (95 % CI) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
