"""Does averaging over several framings of each crop make facial hair less fragile (issue 14, item 3)?

    python benchmarks/framing_tta.py --model default [--zooms 0.93 1.0 1.07]

The model scores each image as given and re-framed by each zoom of ``--zooms``
(``benchmarks/robustness.py``'s ``zoom``: > 1 a tighter crop, < 1 a looser one, edges replicated), and
the framing score is the mean. Its tau is re-chosen (min-HTER) on the validation part of the split
rebuilt from the model file's settings; the plain score keeps the stored tau. Nothing touches the held-out
part before scoring. Prints held-out HTER for both, paired, and the FAR of ``facial_hair.py``'s 54 held-out
facial-hair faces (and the other 246 class-0 faces) under each of robustness.py's perturbations.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[0].parent / "shared" / "data"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--zooms", type=float, nargs="+", default=[0.93, 1.0, 1.07])
    ap.add_argument("--data", default=str(DATA / "train_img.zip"))
    ap.add_argument("--labels", default=str(DATA / "label_train.txt"))
    args = ap.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from facial_hair import judged_faces, wilson
    from robustness import _pil_map, perturbations, zoom

    from clearface import metrics
    from clearface.calibration import fit_threshold
    from clearface.data import load_labelled
    from clearface.data.split import split_from_config
    from clearface.engines import load_engine
    from clearface.modelfile import load_model_file

    s, y = load_labelled(args.data, args.labels)
    parts = split_from_config(load_model_file(args.model)["config"], s.hashes, y)
    engine = load_engine(args.model)
    tau = engine.info["threshold"]

    def framed(images, plain):  # mean score over the re-framed copies; zoom 1.0 is the plain score, not rescored
        return np.mean([plain if z == 1.0 else engine.score(_pil_map(images, zoom(z))) for z in args.zooms], axis=0)

    val, test = np.flatnonzero(parts == "val"), np.flatnonzero(parts == "test")
    x_val, x_test = np.ascontiguousarray(s.images[val]), np.ascontiguousarray(s.images[test])
    plain_val_scores = engine.score(x_val)
    plain_val = metrics.summarize(plain_val_scores, y[val], tau)
    framed_val = framed(x_val, plain_val_scores)
    tau_f = fit_threshold(framed_val, y[val], "min_hter")
    print(f"model {args.model}: stored tau {tau:.4f} (validation HTER {plain_val.hter:.4f}, AUC {plain_val.auc:.4f}); "
          f"framings {args.zooms}: tau {tau_f:.4f} chosen on the same {len(val)} validation images (validation HTER "
          f"{metrics.hter(framed_val, y[val], tau_f):.4f}, AUC {metrics.roc_auc(framed_val, y[val]):.4f})\n")
    plain = engine.score(x_test)
    fr = framed(x_test, plain)
    print("| score | held-out HTER (95 % CI) | FAR | FRR | AUC |\n|---|---|---|---|---|")
    for name, sc, t in (("plain (stored tau)", plain, tau), ("mean over framings", fr, tau_f)):
        m = metrics.summarize_with_ci(sc, y[test], t)
        print(f"| {name} | {m['hter']:.4f} ({m['hter_ci95'][0]:.4f}-{m['hter_ci95'][1]:.4f}) | {m['far']:.4f} "
              f"| {m['frr']:.4f} | {m['auc']:.4f} |")
    d, lo, hi = metrics.paired_hter_diff(plain, tau, fr, tau_f, y[test])
    print(f"\nframings - plain, paired on the held-out images: {d:+.4f} ({lo:+.4f} to {hi:+.4f})\n")

    idx, fh = judged_faces(s.names, y, parts)
    faces = np.ascontiguousarray(s.images[idx])
    print("| change | FAR facial hair, plain | FAR facial hair, framings (95 % CI) | FAR other class 0, plain -> framings |\n"
          "|---|---|---|---|")
    for name, fn in perturbations():
        x = faces if fn is None else _pil_map(faces, fn)
        sc = engine.score(x)
        a, b = sc >= tau, framed(x, sc) >= tau_f
        k = int(b[fh].sum())
        lo, hi = wilson(k, int(fh.sum()))
        print(f"| {name} | {a[fh].mean():.3f} | {k / fh.sum():.3f} ({lo:.3f}-{hi:.3f}) | "
              f"{a[~fh].mean():.3f} -> {b[~fh].mean():.3f} |", flush=True)


if __name__ == "__main__":
    main()
