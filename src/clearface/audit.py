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

from .data.ingest import write_text_atomic
from .errors import ClearfaceError


def read_scores(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    p = Path(path)
    if p.is_dir():
        p = p / "val_scores.csv"
    if not p.exists():
        raise ClearfaceError(f"{p}: no such scores file (give a run folder or its val_scores.csv)")
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"name", "label", "score"} <= set(rows[0]):
        raise ClearfaceError(f"{p}: expected columns name,label,score")
    return ([r["name"] for r in rows], np.array([int(r["label"]) for r in rows]),
            np.array([float(r["score"]) for r in rows]))


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
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    sheet.save(tmp)
    tmp.replace(path)


def audit(scores_path, out, data=None, labels_path=None, top: int = 100, sheet=None, cache_dir=None) -> dict:
    names, y, s = read_scores(scores_path)
    if labels_path:
        from .data import read_labels, list_images
        truth = read_labels(labels_path)
        order = {n: i for i, n in enumerate(list_images(data))} if data else None
        if order:
            for n, lab in zip(names, y):
                if n in order and truth[order[n]] != lab:
                    raise ClearfaceError(f"{labels_path}: label of {n} differs from {scores_path}")
    idx = find_suspects(y, s)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "name", "label", "score", "self_confidence", "suggested_label"])
    for rank, i in enumerate(idx, 1):
        conf = s[i] if y[i] == 1 else 1 - s[i]
        w.writerow([rank, names[i], int(y[i]), f"{s[i]:.6f}", f"{conf:.6f}", 1 - int(y[i])])
    write_text_atomic(out, buf.getvalue())
    result = {"n": len(y), "suspects": int(len(idx)), "share": float(len(idx) / len(y)),
              "suspects_labelled_1": int((y[idx] == 1).sum()), "suspects_labelled_0": int((y[idx] == 0).sum())}
    if sheet and data:
        from .data import load_images
        imgs = load_images(data, cache_dir=cache_dir)
        pos = {n: i for i, n in enumerate(imgs.names)}
        pick = [i for i in idx[:top] if names[i] in pos]
        contact_sheet([imgs.images[pos[names[i]]] for i in pick], [names[i] for i in pick], y[pick], s[pick], sheet)
        result["sheet"] = str(sheet)
    return result
