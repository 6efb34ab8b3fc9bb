"""Training targets: hard labels, or hard labels mixed with a teacher's tempered scores (distillation),
and the labels ``clearface audit`` flags as likely wrong (left out, or replaced by their out-of-fold score).

The teacher's scores come from ``clearface predict --scores`` (``name,score,label``); the suspects from
``clearface audit`` (``name,label,score``). Only the rows of images this run trains on are ever read
into a target: validation images choose tau and held-out images score the run, so both keep their own
hard labels and no teacher score or suspect flag of theirs is used.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..errors import ClearfaceError


def temper(scores: np.ndarray, temperature: float) -> np.ndarray:
    """``sigmoid(logit(s) / T)``: T > 1 pulls scores towards 0.5, T < 1 pushes them out; T = 1 is identity."""
    s = np.clip(np.asarray(scores, np.float64), 1e-6, 1 - 1e-6)
    return 1.0 / (1.0 + np.exp(-(np.log(s) - np.log1p(-s)) / float(temperature)))


def mix(hard: np.ndarray, scores: np.ndarray, alpha: float, temperature: float) -> np.ndarray:
    """``alpha * hard + (1 - alpha) * temper(scores)`` as float32 targets."""
    return (alpha * np.asarray(hard, np.float64) + (1 - alpha) * temper(scores, temperature)).astype(np.float32)


def distilling(cfg: dict) -> bool:
    return float((cfg.get("distill") or {}).get("alpha", 1.0)) < 1.0


def read_teacher_scores(path, names: list[str], needed: np.ndarray) -> np.ndarray:
    """Scores of ``names`` from a teacher CSV (``name,score[,label]``), NaN where absent.

    ``needed``: boolean mask of the images that must have a score (the training part). Every row is
    checked, but the scores of other images (validation, held-out) are dropped here, so none of
    them can reach a target.
    """
    p = Path(path).expanduser()
    out = np.full(len(names), np.nan, np.float64)
    for line, i, row in csv_rows(p, names, ("name", "score"), "teacher score file", "training data"):
        v = score_cell(row.get("score"), p, line)
        if needed[i]:
            out[i] = v
    missing = np.flatnonzero(needed & np.isnan(out))
    if missing.size:
        raise ClearfaceError(f"{p}: no score for {missing.size} training images (first: {names[missing[0]]!r})")
    return out


def read_suspects(path, names: list[str], labels: np.ndarray, trainable: np.ndarray) -> np.ndarray:
    """Out-of-fold scores of the flagged images among ``trainable`` (a boolean mask), NaN for every other image.

    Each row's label must be the image's label in the training data: a suspects file made from another
    label file would flag the wrong images, so it is one line naming the row instead.
    """
    p = Path(path).expanduser()
    out = np.full(len(names), np.nan, np.float64)
    for line, i, row in csv_rows(p, names, ("name", "label", "score"), "suspects file", "training data"):
        if row["label"] not in ("0", "1") or int(row["label"]) != labels[i]:
            raise ClearfaceError(f"{p}:{line}: label {row['label']!r} of {row['name']} is not its label in the "
                                 f"training data ({int(labels[i])}); was the audit made from another label file?")
        v = score_cell(row.get("score"), p, line)
        if trainable[i]:
            out[i] = v
    return out


def training_targets(labels: np.ndarray, teacher: np.ndarray | None, suspects: np.ndarray | None,
                     cfg: dict) -> np.ndarray | None:
    """Float loss targets of the images ``labels`` belongs to, or None where the hard labels are the targets.

    ``teacher``/``suspects``: per-image arrays aligned with ``labels`` (NaN where there is none). With
    ``suspects.action: soft`` a flagged image's target is its out-of-fold score, whatever the teacher says.
    """
    soft = suspects is not None and cfg["suspects"]["action"] == "soft"
    if teacher is None and not soft:
        return None
    targets = np.asarray(labels, np.float32).copy()
    if teacher is not None:
        d = cfg["distill"]
        targets = mix(labels, teacher, float(d["alpha"]), float(d["temperature"]))
    if soft:
        flagged = ~np.isnan(suspects)
        targets[flagged] = suspects[flagged]
    return targets


def csv_rows(p: Path, names: list[str], required: tuple, what: str, data: str):
    """``(line, position in names, row)`` of a CSV keyed by image name (teacher scores, pseudo-labels),
    with one-line errors for a missing file, a missing column, an unknown image or a non-text file."""
    if not p.is_file():
        raise ClearfaceError(f"{p}: no such {what}")
    where = {n: i for i, n in enumerate(names)}
    with open(p, newline="") as f:
        try:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not set(required) <= set(reader.fieldnames):
                raise ClearfaceError(f"{p}: needs a header with {' and '.join(repr(c) for c in required)} columns")
            for line, row in enumerate(reader, start=2):
                i = where.get(row["name"])
                if i is None:
                    raise ClearfaceError(f"{p}:{line}: image {row['name']!r} is not in the {data}")
                yield line, i, row
        except UnicodeDecodeError:
            raise ClearfaceError(f"{p}: not a text CSV") from None


def score_cell(text, path, line) -> float:
    """One score cell of a CSV, checked: a number in [0, 1], else one line naming file and line."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise ClearfaceError(f"{path}:{line}: score {text!r} is not a number") from None
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise ClearfaceError(f"{path}:{line}: score {text!r} is not in [0, 1]")
    return v
