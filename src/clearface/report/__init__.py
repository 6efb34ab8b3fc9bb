"""``clearface report``: one self-contained HTML page on how a model does on labelled images.

:func:`build_report` scores the images once, then writes into a fresh folder::

    DIR/index.html        the page (relative links only: opens offline, no CDN, no scripts)
    DIR/metrics.json      every number on the page, machine-readable
    DIR/scores.csv        name, label, score per image
    DIR/figures/*.png     ROC, DET, FAR/FRR/HTER against tau, histograms, confusion, training
    DIR/img/*.png         gallery thumbnails (128 px) and Grad-CAM overlays

The folder is built under a temporary name beside DIR and renamed at the end, so DIR is either
the previous complete report or the new one, never half of each. An existing DIR is replaced
only when it holds a previous report (``index.html`` + ``metrics.json``) or is empty.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .. import metrics
from ..data import list_images, load_images, read_labels
from ..errors import ClearfaceError
from ..inference import resolve_model_path

__all__ = ["build_report"]

TILE = 128


# ---------------------------------------------------------------------------- model

def _load_model(model, engine: str, cache_dir):
    """``(score_fn, scorer_or_None, info)``.

    Scores come from :func:`clearface.predict.load_engine` (the same engine and numbers as
    ``clearface evaluate``); for a ``.pt`` model the PyTorch Scorer is built too, for Grad-CAM.
    """
    from ..predict import load_engine
    score_fn, info = load_engine(model, engine, cache_dir)
    info = dict(info)
    path = resolve_model_path(model)
    if path.suffix == ".onnx":
        info["format"] = "onnx"
        return score_fn, None, info
    from ..inference import build_scorer, load_model_file
    blob = load_model_file(path)
    info["model"] = blob["path"]
    info["format"] = "pt"
    info["created"] = blob.get("created")
    info["member_kwargs"] = [m.get("model_kwargs") or {} for m in blob["members"]]
    info["recorded_metrics"] = blob.get("metrics") or {}
    return score_fn, build_scorer(blob), info


# ---------------------------------------------------------------------------- output folder

def _is_replaceable(out: Path) -> bool:
    if not out.exists():
        return True
    if not out.is_dir():
        return False
    if not any(out.iterdir()):
        return True
    return (out / "index.html").is_file() and (out / "metrics.json").is_file()


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ClearfaceError(f"{out}: exists and is not a folder; give --out a folder for the report")
    if not _is_replaceable(out):
        raise ClearfaceError(f"{out}: folder exists and is not a clearface report (no index.html and "
                             "metrics.json); choose a new or empty --out folder")


def _swap_in(tmp: Path, out: Path) -> None:
    _check_out(out)
    if out.exists():
        old = out.with_name(f".{out.name}.old{os.getpid()}")
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except OSError:
            os.replace(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


# ---------------------------------------------------------------------------- numbers

def _at(scores, y, tau: float, n_boot: int, seed: int) -> dict:
    from .figures import confusion_counts
    s = metrics.summarize_with_ci(scores, y, tau, n_boot=n_boot, seed=seed)
    c = confusion_counts(scores, y, tau)
    s["false_accepts"], s["false_rejects"] = c["fp"], c["fn"]
    s["confusion"] = c
    return s


FAR_TARGETS = (0.001, 0.01, 0.05, 0.1)
FRR_TARGETS = (0.001, 0.01, 0.05, 0.1)


def operating_points(scores, y) -> list[dict]:
    """The other error rate when one is held at a target: the lowest tau with FAR <= target,
    and the highest tau with FRR <= target (from :func:`clearface.metrics.error_curves`)."""
    taus, far, frr = metrics.error_curves(scores, y)
    rows = []
    for target in FAR_TARGETS:
        i = int(np.flatnonzero(far <= target + 1e-12)[0])  # far[-1] == 0, so there is always one
        rows.append({"fixed": "FAR", "target": target, "threshold": float(taus[i]) if np.isfinite(taus[i]) else None,
                     "far": float(far[i]), "frr": float(frr[i]), "hter": float((far[i] + frr[i]) / 2)})
    for target in FRR_TARGETS:
        i = int(np.flatnonzero(frr <= target + 1e-12)[-1])  # frr[0] == 0
        rows.append({"fixed": "FRR", "target": target, "threshold": float(taus[i]) if np.isfinite(taus[i]) else None,
                     "far": float(far[i]), "frr": float(frr[i]), "hter": float((far[i] + frr[i]) / 2)})
    return rows


# ---------------------------------------------------------------------------- galleries

def _thumb(image_chw: np.ndarray, size: int = TILE):
    from PIL import Image
    return Image.fromarray(np.ascontiguousarray(image_chw.transpose(1, 2, 0))).resize((size, size), Image.BICUBIC)


def _gallery(images, names, scores, y, tau, idx, prefix: str, img_dir: Path) -> list[dict]:
    items = []
    for k, i in enumerate(idx, 1):
        i = int(i)
        fname = f"{prefix}_{k:02d}.png"
        _thumb(images[i]).save(img_dir / fname, format="PNG", compress_level=3)
        items.append({"index": i, "name": names[i], "short": Path(names[i]).name, "label": int(y[i]),
                      "score": float(scores[i]), "predicted": int(float(scores[i]) >= tau), "file": f"img/{fname}"})
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


# ---------------------------------------------------------------------------- the report

def build_report(model, data, labels, out, run=None, threshold: float | None = None, resize: bool = False,
                 cache_dir=None, use_cache: bool = False, batch_size: int = 512, engine: str = "auto", n_gallery: int = 24,
                 n_correct: int = 24, n_saliency: int = 16, n_boot: int = 1000, seed: int = 0) -> dict:
    """Score ``data`` with ``model`` and write the report folder ``out``; return ``metrics.json``'s dict.

    ``threshold`` replaces the model's stored tau (as ``evaluate --threshold``); ``run`` is a
    training run folder whose ``summary.csv`` adds the per-epoch curves.
    """
    from . import figures as F
    from .html import render

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    out = Path(out).expanduser().resolve()
    _check_out(out)
    summary = None
    run_dir = Path(run).expanduser() if run else None
    if run_dir is not None:
        if not run_dir.is_dir():
            raise ClearfaceError(f"{run_dir}: no such run folder")
        summary = F.read_summary(run_dir / "summary.csv")

    names = list_images(data)
    y = read_labels(labels, expected=len(names))
    score_fn, scorer, info = _load_model(model, engine, cache_dir)
    t = time.perf_counter()
    imgs = load_images(data, resize=resize, cache_dir=cache_dir, use_cache=use_cache)
    timings["decode"] = time.perf_counter() - t
    t = time.perf_counter()
    scores = np.asarray(score_fn(imgs.images, batch_size=batch_size), dtype=np.float32)
    timings["score"] = time.perf_counter() - t

    if threshold is not None:
        tau, origin = float(threshold), "--threshold"
    else:
        if info.get("threshold") is None:
            raise ClearfaceError(f"{info['model']}: model stores no threshold; pass --threshold")
        tau = float(info["threshold"])
        origin = f"stored: {info.get('threshold_method')} on {info.get('threshold_source')}"

    t = time.perf_counter()
    head = _at(scores, y, tau, n_boot, seed)
    head["threshold_origin"] = origin
    head["model"] = str(info["model"])
    half = _at(scores, y, 0.5, n_boot, seed)
    timings["metrics"] = time.perf_counter() - t

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        (tmp / "figures").mkdir(parents=True)
        (tmp / "img").mkdir()

        # -- figures
        t = time.perf_counter()
        figs = {}
        for key, fn in (("roc", F.roc_figure), ("det", F.det_figure), ("error_vs_tau", F.error_vs_tau_figure),
                        ("histogram", F.histogram_figure), ("confusion", F.confusion_figure)):
            fn(scores, y, tau, tmp / "figures" / f"{key}.png")
            figs[key] = f"figures/{key}.png"
        run_info = None
        if summary is not None:
            F.training_figure(summary, tmp / "figures" / "training.png")
            figs["training"] = "figures/training.png"
            h = summary["val_hter"]
            best = int(np.nanargmin(h)) if np.isfinite(h).any() else None
            run_info = {"dir": str(run_dir), "epochs": int(len(summary["epoch"])),
                        "best_epoch": int(summary["epoch"][best]) if best is not None else None,
                        "best_val_hter": float(h[best]) if best is not None else None,
                        "last": {k: (float(v[-1]) if np.isfinite(v[-1]) else None) for k, v in summary.items()}}
        timings["figures"] = time.perf_counter() - t

        # -- galleries
        t = time.perf_counter()
        rng = np.random.default_rng(seed)
        acc = scores.astype(np.float64) >= tau  # as clearface.metrics compares (no float32 rounding of tau)
        fa = np.flatnonzero(acc & (y == 0))
        fa = fa[np.argsort(-scores[fa], kind="stable")]
        fr = np.flatnonzero(~acc & (y == 1))
        fr = fr[np.argsort(scores[fr], kind="stable")]
        ok0 = np.flatnonzero(~acc & (y == 0))
        ok1 = np.flatnonzero(acc & (y == 1))
        c0, c1 = _balanced(rng, ok0, ok1, n_correct)
        correct = np.concatenate([c0, c1])
        correct = correct[np.argsort(scores[correct], kind="stable")]
        img_dir = tmp / "img"
        galleries = {
            "false_accepts": _gallery(imgs.images, imgs.names, scores, y, tau, fa[:n_gallery], "fa", img_dir),
            "false_rejects": _gallery(imgs.images, imgs.names, scores, y, tau, fr[:n_gallery], "fr", img_dir),
            "correct": _gallery(imgs.images, imgs.names, scores, y, tau, correct, "ok", img_dir),
        }
        gallery_totals = {"false_accepts": int(fa.size), "false_rejects": int(fr.size),
                          "correct": int(ok0.size + ok1.size)}
        timings["galleries"] = time.perf_counter() - t

        # -- saliency
        t = time.perf_counter()
        saliency = _saliency(scorer, imgs, scores, y, tau, fa, fr, ok0, ok1, n_saliency, rng, img_dir)
        timings["saliency"] = time.perf_counter() - t

        # -- numbers, scores, page
        lines = ["name,label,score"] + [f"{n},{int(l)},{s:.9g}" for n, l, s in zip(imgs.names, y, scores)]
        (tmp / "scores.csv").write_text("\n".join(lines) + "\n")
        model_info = {k: v for k, v in info.items() if k != "recorded_metrics"}
        result = {
            "clearface_report": 1,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model": model_info,
            "recorded_metrics": info.get("recorded_metrics") or {},
            "data": {"images": str(data), "labels": str(labels), "n": int(len(y))},
            "threshold": {"value": tau, "origin": origin, "method": info.get("threshold_method"),
                          "source": info.get("threshold_source")},
            "headline": head,
            "at_tau_0_5": half,
            "operating_points": operating_points(scores, y),
            "bootstrap": {"resamples": n_boot, "seed": seed, "level": 0.95,
                          "method": "percentile; each class resampled separately"},
            "figures": figs,
            "galleries": galleries,
            "gallery_totals": gallery_totals,
            "saliency": saliency,
            "run": run_info,
        }
        timings["total"] = time.perf_counter() - t_start
        result["seconds"] = {k: round(v, 3) for k, v in timings.items()}
        (tmp / "metrics.json").write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
        html = render(result, summary=summary)
        (tmp / ".index.html.tmp").write_text(html, encoding="utf-8")
        os.replace(tmp / ".index.html.tmp", tmp / "index.html")
        _swap_in(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    result["out"] = str(out)
    return result


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _saliency(scorer, imgs, scores, y, tau, fa, fr, ok0, ok1, n: int, rng, img_dir: Path) -> dict:
    if n <= 0:
        return {"skipped": "not requested (n_saliency = 0)", "items": []}
    if scorer is None:
        return {"skipped": "the model is an ONNX export; Grad-CAM needs the PyTorch model file (.pt)", "items": []}
    from .gradcam import GradCAM, overlay
    n_err = n // 2
    errors = _interleave(fa, fr, n_err)
    good0, good1 = _balanced(rng, ok0, ok1, n - len(errors))
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
        tile.paste(_thumb(batch[k - 1]), (0, 0))
        tile.paste(overlay(batch[k - 1], m, size=TILE, alpha=0.45), (TILE + 4, 0))
        fname = f"cam_{k:02d}.png"
        tile.save(img_dir / fname, format="PNG", compress_level=3)
        kind = ("false accept" if y[i] == 0 else "false reject") if pred[k - 1] != y[i] else "correct"
        items.append({"index": int(i), "name": imgs.names[i], "short": Path(imgs.names[i]).name,
                      "label": int(y[i]), "score": float(scores[i]), "predicted": int(pred[k - 1]),
                      "kind": kind, "explains": "clean face" if pred[k - 1] == 1 else "occluded",
                      "file": f"img/{fname}"})
    return {"layer": f"members[0].{cam.layer_name}", "member": 0, "items": items,
            "feature_map": list(cam.activations.shape[-2:])}
