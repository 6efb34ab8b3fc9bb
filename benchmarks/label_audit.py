"""Where the audit's suspects fall, and whether the packaged ensemble agrees with them (issue 14, item 2).

    python benchmarks/label_audit.py SUSPECTS.csv [--reference default] [--ensemble ensemble] [--agreed OUT.csv]

SUSPECTS.csv is what ``clearface audit`` writes from a k-fold run's out-of-fold scores. The split
(training / validation / held-out part) is rebuilt from the reference model file's settings, as
``heldout_compare.py`` does, so the table says how many flags ``--suspects.action`` would act on
(training part only) and how many it leaves alone (validation: they choose tau).

"Ensemble agrees" = the ensemble's call at its stored tau is the audit's suggested label. The
ensemble was trained on the training part, so there its call is in-sample (it had the given label to
learn from and still disagrees); on the validation part it is out-of-sample. For scale, the same
share is printed for the same number of unflagged images of each part and label (how often the
ensemble contradicts a label nobody flagged). Prints markdown tables. ``--agreed OUT.csv`` also writes
the rows of SUSPECTS.csv that the ensemble agrees with, in the same format, for ``clearface train
--suspects.file`` (flags that two different models back, rather than the audit's alone).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suspects", help="suspects CSV written by `clearface audit`")
    ap.add_argument("--reference", default="default", help="model file whose settings rebuild the split")
    ap.add_argument("--ensemble", default="ensemble", help="model file whose agreement is counted")
    ap.add_argument("--data", default=str(DATA / "train_img.zip"))
    ap.add_argument("--labels", default=str(DATA / "label_train.txt"))
    ap.add_argument("--seed", type=int, default=0, help="seed drawing the unflagged comparison images")
    ap.add_argument("--agreed", default=None, help="write the suspects the ensemble agrees with to this CSV")
    args = ap.parse_args(argv)

    from clearface.data import load_labelled
    from clearface.data.split import TEST, TRAIN, VAL, split_from_config
    from clearface.engines import load_engine
    from clearface.modelfile import load_model_file
    from clearface.train.targets import read_suspects

    imageset, y = load_labelled(args.data, args.labels)
    parts = split_from_config(load_model_file(args.reference)["config"], imageset.hashes, y)
    flagged = ~np.isnan(read_suspects(args.suspects, imageset.names, y, np.ones(len(y), bool)))
    ens = load_model_file(args.ensemble)
    engine, tau = load_engine(args.ensemble, blob=ens), float(ens["threshold"])
    rng = np.random.default_rng(args.seed)

    audited = parts != TEST  # a k-fold run scores every image but the held-out ones
    # the ensemble's call on every flagged image, scored once for the table and for --agreed
    calls = np.full(len(y), -1)
    calls[flagged] = (engine.score(imageset.images[flagged]) >= tau).astype(int)
    print(f"\n{int(flagged.sum())} suspects in {args.suspects} ({flagged.sum() / audited.sum():.2%} of the "
          f"{int(audited.sum())} labels outside the held-out part); "
          f"split rebuilt from {args.reference}'s settings; ensemble: {args.ensemble} at tau {tau:.4f}.\n")
    print("| part | given label | suspects | share of that part's label | ensemble agrees with the suspect "
          "| same count unflagged: ensemble contradicts the label |")
    print("|---|---|---|---|---|---|")
    for part in (TRAIN, VAL, TEST):
        for label in (0, 1):
            group = (parts == part) & (y == label)
            idx = np.flatnonzero(group & flagged)
            if not group.any():
                continue
            if not idx.size:
                print(f"| {part} | {label} | 0 | 0 % | | |")
                continue
            agree = float((calls[idx] != label).mean())
            clean = np.flatnonzero(group & ~flagged)
            ref = rng.choice(clean, min(idx.size, clean.size), replace=False)
            contradicts = float(((engine.score(imageset.images[ref]) >= tau).astype(int) != label).mean())
            print(f"| {part} | {label} | {idx.size} | {idx.size / group.sum():.1%} | {agree:.1%} | {contradicts:.1%} |")
    if args.agreed:
        agreed = {imageset.names[i] for i in np.flatnonzero(flagged & (calls != y))}
        _write_agreed(args.suspects, args.agreed, agreed)
    return 0


def _write_agreed(src, out, agreed: set) -> None:
    """The rows of the suspects CSV ``src`` whose image is in ``agreed``, header kept, to ``out``."""
    import csv

    from clearface.outputs import write_text_atomic
    with open(src, newline="") as f:
        rows = list(csv.reader(f))
    col = rows[0].index("name")
    kept = [rows[0]] + [r for r in rows[1:] if r[col] in agreed]
    write_text_atomic(out, "".join(",".join(r) + "\n" for r in kept))
    print(f"\nwrote {len(kept) - 1} of {len(rows) - 1} suspects (the ones the ensemble agrees with) to {out}")


if __name__ == "__main__":
    raise SystemExit(main())
