"""Contact sheets of a model's most confident errors on a run's held-out part.

    python benchmarks/worst_errors.py --model default --run runs/mobilenet96_s0 --out docs/

Writes OUT/worst_false_rejects.png (labelled 1, lowest scores) and OUT/worst_false_accepts.png
(labelled 0, highest scores), 40 each, captioned with name, label and score, for a person to
look at: many of them turn out to be label errors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--run", required=True, help="run folder whose split.csv marks the held-out part")
    ap.add_argument("--data", default=str(DATA / "train_img.zip"))
    ap.add_argument("--labels", default=str(DATA / "label_train.txt"))
    ap.add_argument("--out", default="docs")
    ap.add_argument("--n", type=int, default=40)
    args = ap.parse_args()

    from clearface.audit import contact_sheet
    from clearface.data import load_labelled
    from clearface.engines import load_engine
    from clearface.rundir import RunDir

    s, y = load_labelled(args.data, args.labels)
    idx = RunDir(args.run).split_indices("test", s.names)
    engine = load_engine(args.model)
    score, info = engine.score, engine.info
    sc = score(np.ascontiguousarray(s.images[idx]))
    tau, yt = info["threshold"], y[idx]
    fr = np.flatnonzero((yt == 1) & (sc < tau))
    fa = np.flatnonzero((yt == 0) & (sc >= tau))
    out = Path(args.out)
    for name, pick in (("worst_false_rejects", fr[np.argsort(sc[fr])]), ("worst_false_accepts", fa[np.argsort(-sc[fa])])):
        pick = pick[: args.n]
        contact_sheet(s.images[idx[pick]], [s.names[i] for i in idx[pick]], yt[pick], sc[pick], out / f"{name}.png")
        print(f"{out / name}.png: {len(pick)} of {len(fr) if 'rejects' in name else len(fa)} errors (tau {tau:.4f})")


if __name__ == "__main__":
    main()
