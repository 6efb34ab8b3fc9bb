"""Scoring whole image sets with a model file: ``predict`` (labels) and ``evaluate`` (metrics)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import metrics
from .data import list_images, load_images, read_labels, write_text_atomic
from .errors import ClearfaceError
from .inference import labels_from_scores, resolve_model_path


def load_engine(model):
    """``(score_fn, info)`` for a .pt model file / run folder, or an .onnx export."""
    path = resolve_model_path(model)
    if path.suffix == ".onnx":
        try:
            from .export import OnnxScorer
        except ImportError as exc:  # pragma: no cover
            raise ClearfaceError(f"{path}: ONNX support is not available ({exc})") from None
        eng = OnnxScorer(path)
        return eng.score, eng.info
    from .inference import build_scorer, load_model_file, score_array
    blob = load_model_file(path)
    scorer = build_scorer(blob)
    info = {k: blob.get(k) for k in ("threshold", "threshold_method", "threshold_source", "tta", "clearface_version")}
    info["model"] = blob["path"]
    info["members"] = [m["model"] for m in blob["members"]]
    return (lambda images, batch_size=512: score_array(scorer, images, batch_size)), info


def _images(data, resize, cache_dir, use_cache):
    return load_images(data, resize=resize, cache_dir=cache_dir, use_cache=use_cache)


def predict(model, data, out, scores_path=None, threshold=None, resize=False, cache_dir=None,
            batch_size=512, use_cache=False) -> dict:
    import torch
    torch.set_num_threads(torch.get_num_threads())
    t0 = time.perf_counter()
    score_fn, info = load_engine(model)
    imgs = _images(data, resize, cache_dir, use_cache)
    scores = score_fn(imgs.images, batch_size=batch_size)
    tau = info["threshold"] if threshold is None else float(threshold)
    labels = labels_from_scores(scores, tau)
    write_text_atomic(out, "".join(f"{v}\n" for v in labels))
    if scores_path:
        lines = ["name,score,label"] + [f"{n},{s:.6f},{l}" for n, s, l in zip(imgs.names, scores, labels)]
        write_text_atomic(scores_path, "\n".join(lines) + "\n")
    elapsed = time.perf_counter() - t0
    return {"n": len(labels), "n_pos": int(labels.sum()), "threshold": tau, "seconds": elapsed,
            "images_per_s": len(labels) / max(elapsed, 1e-9), "scores": scores, "names": imgs.names}


def evaluate(model, data, labels, threshold=None, resize=False, cache_dir=None, batch_size=512,
             use_cache=False) -> dict:
    y = read_labels(labels, expected=len(list_images(data)))
    score_fn, info = load_engine(model)
    imgs = _images(data, resize, cache_dir, use_cache)
    scores = score_fn(imgs.images, batch_size=batch_size)
    tau = info["threshold"] if threshold is None else float(threshold)
    s = metrics.summarize(scores, y, tau).as_dict()
    s["hter_ci95"] = list(metrics.bootstrap_hter(scores, y, tau))
    s["threshold_origin"] = "--threshold" if threshold is not None else (
        f"stored: {info.get('threshold_method')} on {info.get('threshold_source')}")
    s["model"] = str(info["model"])
    return s
