"""The report's image galleries: false accepts, false rejects, correct calls, and Grad-CAM pairs.

Every function writes PNG thumbnails into the report's ``img/`` folder and returns the entries
the page lists (index, name, label, score, decision, file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TILE = 128


def thumb(image_chw: np.ndarray, size: int = TILE):
    from PIL import Image
    return Image.fromarray(np.ascontiguousarray(image_chw.transpose(1, 2, 0))).resize((size, size), Image.BICUBIC)


def _entry(i: int, names, scores, y, predicted: int, fname: str) -> dict:
    return {"index": int(i), "name": names[i], "short": Path(names[i]).name, "label": int(y[i]),
            "score": float(scores[i]), "predicted": int(predicted), "file": f"img/{fname}"}


def gallery(images, names, scores, y, tau, idx, prefix: str, img_dir: Path) -> list[dict]:
    items = []
    for k, i in enumerate(idx, 1):
        i = int(i)
        fname = f"{prefix}_{k:02d}.png"
        thumb(images[i]).save(img_dir / fname, format="PNG", compress_level=3)
        items.append(_entry(i, names, scores, y, float(scores[i]) >= tau, fname))
    return items


def _pick(rng, idx: np.ndarray, k: int) -> np.ndarray:
    return idx if idx.size <= k else np.sort(rng.choice(idx, k, replace=False))


def _balanced(rng, a: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A random sample of ``k`` from two pools, half from each where both have enough."""
    ka = min(a.size, max(k // 2, k - b.size))
    kb = min(b.size, k - ka)
    return _pick(rng, a, ka), _pick(rng, b, kb)


def _interleave(a, b, k: int) -> list[int]:
    out, ia, ib = [], list(a), list(b)
    while len(out) < k and (ia or ib):
        for src in (ia, ib):
            if src and len(out) < k:
                out.append(int(src.pop(0)))
    return out


def outcomes(scores, y, tau) -> dict[str, np.ndarray]:
    """Image indices by outcome at ``tau``; errors sorted worst first."""
    acc = scores.astype(np.float64) >= tau  # as clearface.metrics compares (no float32 rounding of tau)
    fa = np.flatnonzero(acc & (y == 0))
    fr = np.flatnonzero(~acc & (y == 1))
    return {"fa": fa[np.argsort(-scores[fa], kind="stable")], "fr": fr[np.argsort(scores[fr], kind="stable")],
            "ok0": np.flatnonzero(~acc & (y == 0)), "ok1": np.flatnonzero(acc & (y == 1))}


def galleries(imgs, scores, y, tau, out: dict, n_gallery: int, n_correct: int, rng, img_dir: Path) -> tuple[dict, dict]:
    """``(galleries, totals)``: the worst errors of each kind and a class-balanced sample of correct calls."""
    c0, c1 = _balanced(rng, out["ok0"], out["ok1"], n_correct)
    correct = np.concatenate([c0, c1])
    correct = correct[np.argsort(scores[correct], kind="stable")]
    shown = {"false_accepts": ("fa", out["fa"][:n_gallery]), "false_rejects": ("fr", out["fr"][:n_gallery]),
             "correct": ("ok", correct)}
    items = {key: gallery(imgs.images, imgs.names, scores, y, tau, idx, prefix, img_dir)
             for key, (prefix, idx) in shown.items()}
    totals = {"false_accepts": int(out["fa"].size), "false_rejects": int(out["fr"].size),
              "correct": int(out["ok0"].size + out["ok1"].size)}
    return items, totals


def saliency(scorer, imgs, scores, y, tau, out: dict, n: int, rng, img_dir: Path) -> dict:
    """Grad-CAM pairs for half errors, half correct calls; says why when there are none."""
    if n <= 0:
        return {"skipped": "not requested (n_saliency = 0)", "items": []}
    if scorer is None:
        return {"skipped": "the model is an ONNX export; Grad-CAM needs the PyTorch model file (.pt)", "items": []}
    from ..explain.gradcam import GradCAM, overlay
    errors = _interleave(out["fa"], out["fr"], n // 2)
    good0, good1 = _balanced(rng, out["ok0"], out["ok1"], n - len(errors))
    sel = errors + [int(i) for i in good0] + [int(i) for i in good1]
    if not sel:
        return {"skipped": "no images", "items": []}
    try:
        cam = GradCAM(scorer)
        batch = np.ascontiguousarray(imgs.images[np.array(sel)])
        pred = (scores[sel].astype(np.float64) >= tau).astype(int)
        maps = cam(batch, target=pred)
    except Exception as exc:  # an explanation must never sink the report: say why it is missing
        return {"skipped": f"Grad-CAM failed: {type(exc).__name__}: {str(exc)[:300]}", "items": []}
    from PIL import Image
    items = []
    for k, (i, m) in enumerate(zip(sel, maps), 1):
        tile = Image.new("RGB", (2 * TILE + 4, TILE), (255, 255, 255))
        tile.paste(thumb(batch[k - 1]), (0, 0))
        tile.paste(overlay(batch[k - 1], m, size=TILE, alpha=0.45), (TILE + 4, 0))
        fname = f"cam_{k:02d}.png"
        tile.save(img_dir / fname, format="PNG", compress_level=3)
        kind = ("false accept" if y[i] == 0 else "false reject") if pred[k - 1] != y[i] else "correct"
        entry = _entry(i, imgs.names, scores, y, pred[k - 1], fname)
        entry.update(kind=kind, explains="clean face" if pred[k - 1] == 1 else "occluded")
        items.append(entry)
    return {"layer": f"members[0].{cam.layer_name}", "member": 0, "items": items,
            "feature_map": list(cam.activations.shape[-2:])}
