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
from ..calibration import operating_points
from ..data import list_images, read_labels
from ..errors import ClearfaceError
from ..modelfile import load_model_file, resolve_model_path
from ..rundir import RunDir

FIGURES = ("roc", "det", "error_vs_tau", "histogram", "confusion")


# ---------------------------------------------------------------------------- model

def _load_model(model, engine: str, cache_dir):
    """``(engine, scorer_or_None, info)``, reading the model file once.

    Scores come from :func:`clearface.engines.load_engine` (the same engine and numbers as
    ``clearface evaluate``); for a ``.pt`` model the PyTorch scorer is built too, for Grad-CAM.
    """
    from ..engines import build_scorer, load_engine
    path = resolve_model_path(model)
    if path.suffix == ".onnx":
        eng = load_engine(model, engine, cache_dir)
        return eng, None, dict(eng.info, format="onnx")
    blob = load_model_file(path)
    eng = load_engine(path, engine, cache_dir, blob=blob)
    info = dict(eng.info, model=blob["path"], format="pt", created=blob.get("created"),
                member_kwargs=[m.get("model_kwargs") or {} for m in blob["members"]],
                recorded_metrics=blob.get("metrics") or {})
    return eng, getattr(eng, "scorer", None) or build_scorer(blob), info


def _tau(threshold, info) -> tuple[float, str]:
    if threshold is not None:
        return float(threshold), "--threshold"
    if info.get("threshold") is None:
        raise ClearfaceError(f"{info['model']}: model stores no threshold; pass --threshold")
    return float(info["threshold"]), f"stored: {info.get('threshold_method')} on {info.get('threshold_source')}"


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


# ---------------------------------------------------------------------------- numbers and pictures

def _at(scores, y, tau: float, n_boot: int, seed: int) -> dict:
    from .figures import confusion_counts
    s = metrics.summarize_with_ci(scores, y, tau, n_boot=n_boot, seed=seed)
    c = confusion_counts(scores, y, tau)
    s["false_accepts"], s["false_rejects"] = c["fp"], c["fn"]
    s["confusion"] = c
    return s


def _figures(scores, y, tau, summary, run_dir, folder: Path) -> tuple[dict, dict | None]:
    from . import figures as F
    figs = {}
    for key in FIGURES:
        getattr(F, f"{key}_figure")(scores, y, tau, folder / f"{key}.png")
        figs[key] = f"figures/{key}.png"
    if summary is None:
        return figs, None
    F.training_figure(summary, folder / "training.png")
    figs["training"] = "figures/training.png"
    h = summary["val_hter"]
    best = int(np.nanargmin(h)) if np.isfinite(h).any() else None
    return figs, {"dir": str(run_dir), "epochs": int(len(summary["epoch"])),
                  "best_epoch": int(summary["epoch"][best]) if best is not None else None,
                  "best_val_hter": float(h[best]) if best is not None else None,
                  "last": {k: (float(v[-1]) if np.isfinite(v[-1]) else None) for k, v in summary.items()}}


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


class _Clock:
    def __init__(self):
        self.start = self.t = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name], self.t = now - self.t, now


# ---------------------------------------------------------------------------- the report

def build_report(model, data, labels, out, run=None, threshold: float | None = None, resize: bool = False,
                 preprocess: str | None = None, cache_dir=None, use_cache: bool = False, batch_size: int = 512, engine: str = "auto", n_gallery: int = 24,
                 n_correct: int = 24, n_saliency: int = 16, n_boot: int = 1000, seed: int = 0) -> dict:
    """Score ``data`` with ``model`` and write the report folder ``out``; return ``metrics.json``'s dict.

    ``threshold`` replaces the model's stored tau (as ``evaluate --threshold``); ``run`` is a
    training run folder whose ``summary.csv`` adds the per-epoch curves.
    """
    from . import galleries as G
    from .html import render

    clock = _Clock()
    out = Path(out).expanduser().resolve()
    _check_out(out)
    run_dir = RunDir(run) if run else None
    if run_dir is not None and not run_dir.path.is_dir():
        raise ClearfaceError(f"{run_dir.path}: no such run folder")
    summary = run_dir.read_summary() if run_dir is not None else None
    y = read_labels(labels, expected=len(list_images(data)))
    eng, scorer, info = _load_model(model, engine, cache_dir)
    clock.t = time.perf_counter()
    from ..preprocess import prepare, resolve, step_arg, step_source
    step, framing = resolve(step_source(eng), step_arg(preprocess, resize))  # detect: galleries show largest faces
    imgs = prepare(data, step, framing, cache_dir=cache_dir, use_cache=use_cache)
    clock.lap("decode")
    scores = imgs.score(eng.score, batch_size)
    clock.lap("score")
    tau, origin = _tau(threshold, info)
    head = dict(_at(scores, y, tau, n_boot, seed), threshold_origin=origin, model=str(info["model"]))
    half = _at(scores, y, 0.5, n_boot, seed)
    clock.lap("metrics")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        (tmp / "figures").mkdir(parents=True)
        (tmp / "img").mkdir()
        figs, run_info = _figures(scores, y, tau, summary, run_dir.path if run_dir else None, tmp / "figures")
        clock.lap("figures")
        rng = np.random.default_rng(seed)
        outcome = G.outcomes(scores, y, tau)
        galleries, totals = G.galleries(imgs, scores, y, tau, outcome, n_gallery, n_correct, rng, tmp / "img")
        clock.lap("galleries")
        saliency = G.saliency(scorer, imgs, scores, y, tau, outcome, n_saliency, rng, tmp / "img")
        clock.lap("saliency")

        lines = ["name,label,score"] + [f"{n},{int(lab)},{s:.9g}" for n, lab, s in zip(imgs.names, y, scores)]
        (tmp / "scores.csv").write_text("\n".join(lines) + "\n")
        result = {
            "clearface_report": 1,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "model": {k: v for k, v in info.items() if k != "recorded_metrics"},
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
            "gallery_totals": totals,
            "saliency": saliency,
            "run": run_info,
        }
        clock.seconds["total"] = time.perf_counter() - clock.start
        result["seconds"] = {k: round(v, 3) for k, v in clock.seconds.items()}
        (tmp / "metrics.json").write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
        (tmp / "index.html").write_text(render(result, summary=summary), encoding="utf-8")
        _swap_in(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    result["out"] = str(out)
    return result
