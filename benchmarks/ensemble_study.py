"""Every ensemble (mean score) of finished runs and model files on one split.

    python benchmarks/ensemble_study.py runs/default_s0 runs/mobilenet_s0 runs/mobilenet96_s0 ... [--min 2] [--max 4]
    python benchmarks/ensemble_study.py ensemble default runs/c128_s5 --max 4 --cache runs/member_scores

For each composition: validation AUC and HTER (τ = min-HTER on validation, as `clearface ensemble`
chooses it), then the held-out HTER at that τ with its bootstrap interval, and the held-out AUC.
Sorted by validation AUC, the rule used to pick the shipped ensemble without looking at held-out
data. A run folder's saved validation/held-out scores are used as they are, weighted by its number
of members exactly as ``clearface ensemble`` weighs them. A model file (or packaged name: its run
folders may be gone) is scored now, **each member on its own** (named after the run it came from),
with ``--tta`` and its stored weights, on the validation and held-out parts rebuilt from its stored
settings; every item must give the same parts (else one was trained on another's validation images).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def scored_members(model: str, imageset, y, tta: str, batch_size: int, cache: Path | None = None) -> dict:
    """``{member name: {part: (names, labels, scores)}}`` for each member of one model file; with ``cache``,
    each member's scores are kept there as CSV, keyed by the file's sha256, the member and the TTA."""
    import hashlib

    import numpy as np

    from clearface.data.split import TEST, VAL, split_from_config
    from clearface.engines import TorchEngine
    from clearface.ensemble import member_names
    from clearface.modelfile import load_model_file
    from clearface.outputs import write_text_atomic
    from clearface.rundir import read_score_csv

    blob = load_model_file(model)
    sha = hashlib.sha256(Path(blob["path"]).read_bytes()).hexdigest()[:16]
    parts = split_from_config(blob["config"], imageset.hashes, y)
    out = {}
    for k, (name, member) in enumerate(zip(member_names(blob, Path(model).stem), blob["members"])):
        engine = TorchEngine(dict(blob, members=[member], tta=tta))
        out[name] = {}
        for part in (VAL, TEST):
            kept = cache / f"{sha}_{k}_{tta}_{part}.csv" if cache else None
            if kept and kept.exists():
                out[name][part] = read_score_csv(kept)
                continue
            idx = np.flatnonzero(parts == part)
            names, s = [imageset.names[i] for i in idx], engine.score(imageset.images[idx], batch_size)
            out[name][part] = (names, y[idx], s)
            if kept:
                cache.mkdir(parents=True, exist_ok=True)
                # full precision (a run's score file rounds to 6 decimals), atomic: a killed run leaves no half file
                write_text_atomic(kept, "name,label,score\n"
                                  + "".join(f"{n},{int(v)},{float(x)!r}\n" for n, v, x in zip(names, y[idx], s)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("items", nargs="+", help="run folders, model files or packaged names (default, ensemble)")
    ap.add_argument("--min", type=int, default=1, help="smallest composition size")
    ap.add_argument("--max", type=int, default=None, help="largest composition size (the package holds <= 25 MB)")
    ap.add_argument("--tta", choices=("flip", "none"), default="flip", help="TTA for the model files' members")
    ap.add_argument("--data", default=str(DATA / "train_img.zip"), help="with model files: the labelled images")
    ap.add_argument("--labels", default=str(DATA / "label_train.txt"))
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--cache", type=Path, default=None,
                    help="folder keeping the model files' member scores between runs of this script")
    ap.add_argument("--paired-with", default=None, metavar="A+B+...",
                    help="a composition (member names joined by +) every row is compared with, on the same "
                         "held-out images, each at its own validation tau (paired bootstrap)")
    args = ap.parse_args()

    import numpy as np

    from clearface import metrics
    from clearface.calibration import choose_and_score
    from clearface.ensemble import mean_score
    from clearface.modelfile import load_model_file
    from clearface.rundir import RunDir

    scores, weight = {}, {}  # name -> {part: (names, labels, scores)}; name -> members it stands for
    imageset = y = None
    for item in args.items:
        if Path(item).is_dir():
            run = RunDir(item)
            found = {run.name: ({p: run.read_scores(p) for p in ("val", "test")},
                                len(load_model_file(run.model_path)["members"]))}
        else:
            if imageset is None:
                from clearface.data import load_labelled
                imageset, y = load_labelled(args.data, args.labels)
            found = {name: (parts, 1) for name, parts in
                     scored_members(item, imageset, y, args.tta, args.batch_size, args.cache).items()}
        for name, (parts, members) in found.items():
            if name in scores:
                raise SystemExit(f"{item}: a member named {name!r} was given twice")
            scores[name], weight[name] = parts, members
    names = list(scores)
    ref = names[0]
    for part in ("val", "test"):
        for n in names[1:]:
            if list(scores[n][part][0]) != list(scores[ref][part][0]):
                raise SystemExit(f"{n}: its {part} images differ from {ref}'s: not the same split")
    yv, yt = scores[ref]["val"][1], scores[ref]["test"][1]

    def composed(combo):
        """The composition's held-out scores and the τ its validation scores choose, with the figures."""
        w = np.array([weight[n] for n in combo], float)
        w /= w.sum()  # as `clearface ensemble` weighs them: by members
        sv, st = (mean_score([scores[n][part][2] for n in combo], w) for part in ("val", "test"))
        return st, choose_and_score(sv, yv, "min_hter", "validation split", st, yt)

    paired = None
    if args.paired_with:
        combo = args.paired_with.split("+")
        unknown = [n for n in combo if n not in scores]
        if unknown:
            raise SystemExit(f"--paired-with: {unknown[0]!r} is not one of {', '.join(names)}")
        st, res = composed(combo)
        paired = (st, res["threshold"])
    rows = []
    for k in range(args.min, min(args.max or len(names), len(names)) + 1):
        for combo in itertools.combinations(names, k):
            st, res = composed(combo)
            v, t = res["val"], res["test"]
            diff = ""
            if paired:
                d, lo, hi = metrics.paired_hter_diff(paired[0], paired[1], st, res["threshold"], yt)
                diff = f" {d:+.4f} ({lo:+.4f} to {hi:+.4f}) |"
            rows.append((" + ".join(combo), v["auc"], v["hter"], t["hter"], *t["hter_ci95"], t["auc"], diff))
    rows.sort(key=lambda r: -r[1])
    print(f"{len(yv)} validation images choose τ; {len(yt)} held-out images score it\n")
    extra = (" held-out HTER − " + args.paired_with + ", paired (95 % CI) |", "---|") if paired else ("", "")
    print(f"| members | val AUC | val HTER | held-out HTER (95 % CI) | held-out AUC |{extra[0]}\n"
          f"|---|---|---|---|---|{extra[1]}")
    for name, vauc, vh, th, lo, hi, tauc, diff in rows:
        print(f"| {name} | {vauc:.4f} | {vh:.4f} | {th:.4f} ({lo:.4f}–{hi:.4f}) | {tauc:.4f} |{diff}")


if __name__ == "__main__":
    main()
