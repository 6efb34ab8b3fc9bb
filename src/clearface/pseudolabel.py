"""Pseudo-labels for unlabelled images, from a teacher model, for semi-supervised training.

A teacher's τ is set for balanced errors, so its hard labels are far too noisy to train on (at
τ about 40 % of its class-0 calls on this data are clean faces). Only confident calls are kept:
one score cut per class, chosen on the validation part of the teacher's run so that the kept
calls there reach the requested precision. The held-out part plays no role.

    clearface pseudolabel --model ens.pt --run runs/x --data train.zip --labels train.txt \
        --unlabelled val_img.zip --precision0 0.95 --precision1 0.98 --out pseudo.csv

The CSV (name, score, label) is what ``train --pseudo_labels pseudo.csv --pseudo_data val_img.zip``
adds to the training part.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import ClearfaceError
from .engines import load_engine
from .modelfile import load_model_file
from .outputs import write_text_atomic
from .rundir import VAL, RunDir


def confident_cuts(scores: np.ndarray, labels: np.ndarray, precision0: float, precision1: float) -> tuple[float, float]:
    """``(below, above)``: score <= below is called 0 and score >= above is called 1.

    Each cut is the loosest one whose calls on ``(scores, labels)`` are at least ``precision0`` /
    ``precision1`` correct; where no cut reaches it, that class gets no calls (``-inf`` / ``+inf``).
    The targets are per class because the base rates differ (here 12 % vs 88 %): a class-1
    target below its base rate would call every image 1.
    """
    for name, v in (("precision0", precision0), ("precision1", precision1)):
        if not 0 < v <= 1:
            raise ClearfaceError(f"{name} must be in (0, 1], got {v!r}")
    s, y = np.asarray(scores, np.float64), np.asarray(labels)

    def loosest(order: np.ndarray, cls: int, target: float, none: float) -> float:
        # Calls are made in score order; a cut can only sit where the next score differs.
        ss, hit = s[order], (y[order] == cls)
        prec = np.cumsum(hit) / np.arange(1, len(ss) + 1)
        ends = np.flatnonzero(np.r_[ss[1:] != ss[:-1], True])
        ok = ends[prec[ends] >= target]
        return float(ss[ok[-1]]) if ok.size else none

    asc = np.argsort(s, kind="stable")
    below = loosest(asc, 0, precision0, -np.inf)
    above = loosest(asc[::-1], 1, precision1, np.inf)
    if above <= below:
        raise ClearfaceError(f"the class cuts overlap (class 0 up to {below:.4f}, class 1 from {above:.4f}): "
                             "raise the precision targets")
    return below, above


def call(scores: np.ndarray, below: float, above: float) -> np.ndarray:
    """0/1 for confident calls, -1 for the images left out."""
    out = np.full(len(scores), -1, np.int8)
    out[scores <= below] = 0
    out[scores >= above] = 1
    return out


def pseudolabel(model, run_dir, data, labels, unlabelled, out, precision0: float = 0.95, precision1: float = 0.98,
                 cache_dir=None, batch_size: int = 512, preprocess: str | None = None, engine: str = "auto") -> dict:
    """``preprocess``: the step (crop or resize) that reads both image sets; None: the teacher's own.
    ``engine``: as for ``predict`` (``auto``: onnxruntime through the cached export, about 4x faster
    than PyTorch for the packaged ensemble here; scores agree to ~1e-5)."""
    from .data import load_images, load_labelled
    from .preprocess import resolve

    blob = load_model_file(model)
    scorer = load_engine(blob["path"], engine, cache_dir=cache_dir, blob=blob)
    step = resolve(blob, preprocess)[0]
    imageset, y = load_labelled(data, labels, cache_dir=cache_dir, step=step)
    parts = RunDir(run_dir).validation_split(imageset.names)
    val = np.flatnonzero(parts == VAL)
    sv = scorer.score(imageset.images[val], batch_size)
    below, above = confident_cuts(sv, y[val], precision0, precision1)
    on_val = call(sv, below, above)

    unl = load_images(unlabelled, step, cache_dir=cache_dir)
    su = scorer.score(unl.images, batch_size)
    calls = call(su, below, above)
    keep = np.flatnonzero(calls >= 0)
    rows = ["name,score,label"] + [f"{unl.names[i]},{su[i]:.6f},{calls[i]}" for i in keep]
    write_text_atomic(out, "\n".join(rows) + "\n")

    def share(mask, cls):
        return {"kept": int(mask.sum()), "correct": float((y[val][mask] == cls).mean()) if mask.any() else None,
                "coverage_of_class": float(mask[y[val] == cls].mean()) if (y[val] == cls).any() else None}

    result = {"engine": scorer.info["engine"],
              "precision_target": {"class0": precision0, "class1": precision1}, "below": below, "above": above,
              "cut_source": f"validation split of {Path(run_dir).name} ({len(val)} images)",
              "validation": {"class0": share(on_val == 0, 0), "class1": share(on_val == 1, 1)},
              "unlabelled": {"images": len(su), "class0": int((calls == 0).sum()), "class1": int((calls == 1).sum()),
                             "left_out": int((calls < 0).sum())}}
    write_text_atomic(Path(out).with_suffix(".json"), json.dumps(result, indent=2))
    return result


def read_pseudo_labels(path, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(positions into names, labels, teacher scores or None)`` of a pseudo-label CSV, checked line by line.

    The scores are there when the CSV has a ``score`` column (``pseudolabel`` and ``predict --scores`` write one).
    """
    from .train.targets import csv_rows, score_cell
    p = Path(path).expanduser()
    pos, lab, score = [], [], []
    has_score = None
    for line, i, row in csv_rows(p, names, ("name", "label"), "pseudo-label file", "pseudo-label data"):
        if has_score is None:
            has_score = "score" in row
        if row["label"] not in ("0", "1"):
            raise ClearfaceError(f"{p}:{line}: label {row['label']!r} is not 0 or 1")
        pos.append(i)
        lab.append(int(row["label"]))
        if has_score:
            score.append(score_cell(row["score"], p, line))
    if not pos:
        raise ClearfaceError(f"{p}: no pseudo-labelled images")
    return np.array(pos, np.int64), np.array(lab, np.int8), (np.array(score) if has_score else None)
