"""``clearface audit``: rank likely wrong labels from out-of-fold scores (confident learning).

Scores must come from models that never trained on the image they score: the ``val_scores.csv``
of a k-fold run (``--folds K`` makes every non-held-out image out-of-fold exactly once), or any
CSV with ``name,label,score``. Following Northcutt et al. (2021), each class j gets a confidence
threshold t_j = mean predicted probability of j over images labelled j; an image labelled i is a
suspect when its probability of the other class reaches that class's threshold. Suspects are
ranked by how little the model believes the given label (self-confidence).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from .errors import ClearfaceError
from .outputs import atomic_path, write_text_atomic
from .rundir import VAL, RunDir, read_score_csv


def read_scores(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``name,label,score`` rows (a run folder means its validation scores); any bad row is one line naming it."""
    p = Path(path)
    if p.is_dir():
        p = RunDir(p).scores_path(VAL)
    if not p.exists():
        raise ClearfaceError(f"{p}: no such scores file (give a run folder or its {RunDir(p.parent).scores_path(VAL).name})")
    names, y, scores = read_score_csv(p)
    if y.min() == y.max():
        raise ClearfaceError(f"{p}: every label is {y[0]}; the audit needs images of both classes")
    return names, y, scores


def _check_labels(labels_path, data, names, y, scores_path) -> None:
    """The label file must agree with the scores: matched by name through ``data``, else line by line."""
    from .data import list_images, read_labels
    if data:
        images = list_images(data)
        truth = read_labels(labels_path, expected=len(images))
        order = {n: i for i, n in enumerate(images)}
        for n, lab in zip(names, y):
            if n not in order:
                raise ClearfaceError(f"{scores_path}: {n!r} is not an image of {data}")
            if truth[order[n]] != lab:
                raise ClearfaceError(f"{labels_path}: label of {n} differs from {scores_path}")
        return
    truth = read_labels(labels_path)
    if len(truth) != len(y):
        raise ClearfaceError(f"{labels_path}: {len(truth)} labels but {scores_path} has {len(y)} scores "
                             "(give --data to match them by image name)")
    bad = np.flatnonzero(truth != y)
    if len(bad):
        raise ClearfaceError(f"{labels_path}:{bad[0] + 1}: label differs from {scores_path} ({names[bad[0]]})")


SHEET_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def find_suspects(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of likely mislabelled images, most suspicious first."""
    p1 = scores
    t1 = p1[labels == 1].mean()
    t0 = (1 - p1[labels == 0]).mean()
    suspect = ((labels == 1) & (1 - p1 >= t0)) | ((labels == 0) & (p1 >= t1))
    self_conf = np.where(labels == 1, p1, 1 - p1)
    idx = np.flatnonzero(suspect)
    return idx[np.argsort(self_conf[idx], kind="stable")]


def contact_sheet(images, names, labels, scores, path, cols: int = 10, scale: int = 2) -> None:
    """A grid of suspects, each captioned with its name, given label and score."""
    from PIL import Image, ImageDraw
    size = 64 * scale
    cap = 24
    rows = max(1, (len(images) + cols - 1) // cols)
    sheet = Image.new("RGB", (cols * size, rows * (size + cap)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (img, name, y, s) in enumerate(zip(images, names, labels, scores)):
        r, c = divmod(k, cols)
        tile = Image.fromarray(np.asarray(img).transpose(1, 2, 0)).resize((size, size), Image.NEAREST)
        sheet.paste(tile, (c * size, r * (size + cap)))
        draw.text((c * size + 2, r * (size + cap) + size), f"{Path(name).stem} y={y}", fill="black")
        draw.text((c * size + 2, r * (size + cap) + size + 11), f"p1={s:.3f}", fill="crimson")
    with atomic_path(path, suffix=".png") as tmp:
        sheet.save(tmp)


def audit(scores_path, out, data=None, labels_path=None, top: int = 100, sheet=None, cache_dir=None) -> dict:
    """Write the ranked suspects CSV (and the contact sheet); nothing is written if any input is bad."""
    if sheet and Path(sheet).suffix.lower() not in SHEET_SUFFIXES:
        raise ClearfaceError(f"--sheet {sheet}: give an image file name ({', '.join(SHEET_SUFFIXES)})")
    if sheet and not data:
        raise ClearfaceError("--sheet needs --data (the images to show)")
    names, y, s = read_scores(scores_path)
    if labels_path:
        _check_labels(labels_path, data, names, y, scores_path)
    idx = find_suspects(y, s)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "name", "label", "score", "self_confidence", "suggested_label"])
    for rank, i in enumerate(idx, 1):
        conf = s[i] if y[i] == 1 else 1 - s[i]
        w.writerow([rank, names[i], int(y[i]), f"{s[i]:.6f}", f"{conf:.6f}", 1 - int(y[i])])
    result = {"n": len(y), "suspects": int(len(idx)), "share": float(len(idx) / len(y)),
              "suspects_labelled_1": int((y[idx] == 1).sum()), "suspects_labelled_0": int((y[idx] == 0).sum())}
    if sheet:  # first: a sheet that fails leaves no suspects CSV either
        from .data import load_images
        imgs = load_images(data, cache_dir=cache_dir)
        pos = {n: i for i, n in enumerate(imgs.names)}
        pick = [i for i in idx[:top] if names[i] in pos]
        contact_sheet([imgs.images[pos[names[i]]] for i in pick], [names[i] for i in pick], y[pick], s[pick], sheet)
        result["sheet"] = str(sheet)
    write_text_atomic(out, buf.getvalue())
    return result
