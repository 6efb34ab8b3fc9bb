"""Scoring whole image sets with a model file: ``predict`` (labels) and ``evaluate`` (metrics)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import metrics
from .data import list_images, load_images, read_labels, write_text_atomic
from .errors import ClearfaceError
from .inference import labels_from_scores, model_file_path, resolve_model_path


ENGINES = ("auto", "torch", "onnx")
DEFAULT_ENGINE = "auto"


def onnx_cache_path(model_file, cache_dir=None) -> Path:
    """Where ``--engine auto`` keeps the ONNX export of ``model_file``: keyed by its sha256."""
    from . import __version__
    from .data.ingest import default_cache_dir
    from .export import ONNX_FORMAT_VERSION, file_sha256
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return root / "onnx" / f"{file_sha256(model_file)[:32]}-f{ONNX_FORMAT_VERSION}-v{__version__}.onnx"


def _torch_engine(blob):
    from .inference import build_scorer, score_array
    scorer = build_scorer(blob)
    info = {k: blob.get(k) for k in ("threshold", "threshold_method", "threshold_source", "tta", "clearface_version")}
    info["model"] = blob["path"]
    info["members"] = [m["model"] for m in blob["members"]]
    info["engine"] = "torch"
    return (lambda images, batch_size=512: score_array(scorer, images, batch_size)), info


def _onnx_engine(path, model_path=None):
    try:
        from .export import OnnxScorer
    except ImportError as exc:  # pragma: no cover
        raise ClearfaceError(f"{path}: ONNX support is not available ({exc})") from None
    eng = OnnxScorer(path)
    info = dict(eng.info)
    if model_path is not None:  # auto: report the user's model file, note the export used
        info["model"], info["onnx"] = str(model_path), str(path)
    return eng.score, info


def load_engine(model, engine: str = DEFAULT_ENGINE, cache_dir=None):
    """``(score_fn, info)`` for a .pt model file / run folder, or an .onnx export.

    ``engine``: ``torch`` scores with PyTorch; ``onnx`` and ``auto`` with onnxruntime, through a
    cached export of the model file (``<cache>/onnx/<sha256>.onnx``) made on first use. ``auto``
    falls back to PyTorch (with a warning) when the export fails; ``onnx`` raises instead.
    An ``.onnx`` path always runs in onnxruntime.
    """
    if engine not in ENGINES:
        raise ClearfaceError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    path = resolve_model_path(model)
    if path.suffix == ".onnx":
        if engine == "torch":
            raise ClearfaceError(f"{path}: an ONNX export cannot run with --engine torch (give the .pt model file)")
        return _onnx_engine(path)
    from .inference import load_model_file
    path = model_file_path(model)
    if engine == "torch":
        return _torch_engine(load_model_file(path))

    try:
        cached = onnx_cache_path(path, cache_dir)
    except OSError as exc:
        raise ClearfaceError(f"{path}: cannot read model file ({exc})") from None
    if cached.exists():
        try:
            return _onnx_engine(cached, path)
        except ClearfaceError:
            try:
                cached.unlink()  # damaged cache entry: export again
            except OSError:
                pass
    blob = load_model_file(path)  # a bad model file is the user's error in every engine
    try:
        from .export import export_blob
        cached.parent.mkdir(parents=True, exist_ok=True)
        export_blob(blob, cached)
        return _onnx_engine(cached, path)
    except Exception as exc:  # noqa: BLE001 - any export/runtime problem
        if engine == "onnx":
            if isinstance(exc, ClearfaceError):
                raise
            raise ClearfaceError(f"{path}: ONNX export failed ({type(exc).__name__}: {exc})") from None
        import sys
        print(f"clearface: warning: ONNX export of {path} failed ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}); "
              "scoring with PyTorch", file=sys.stderr)
        return _torch_engine(blob)


def _images(data, resize, cache_dir, use_cache):
    return load_images(data, resize=resize, cache_dir=cache_dir, use_cache=use_cache)


def write_embeddings(model, images: np.ndarray, path, batch_size: int = 512) -> tuple:
    """Save the first member's ``embed(x)`` vectors (e.g. facenet_seed's 128-d) as ``.npy``."""
    import os

    import torch

    from .inference import build_scorer, load_model_file
    mpath = model_file_path(model)
    if mpath.suffix == ".onnx":
        raise ClearfaceError(f"{mpath}: --embeddings needs the PyTorch model file, not an ONNX export")
    scorer = build_scorer(load_model_file(mpath))
    net = scorer.members[0]
    if not hasattr(net, "embed"):
        raise ClearfaceError(f"{mpath}: model {type(net).__name__} has no embed(); --embeddings works with e.g. facenet_seed")
    chunks = []
    with torch.inference_mode():
        for s in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size])).float().div_(255)
            chunks.append(net.embed((x - scorer.mean) / scorer.std).float().numpy())
    emb = np.concatenate(chunks)
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npy")
    try:
        np.save(tmp, emb)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return emb.shape


def predict(model, data, out, scores_path=None, threshold=None, resize=False, cache_dir=None,
            batch_size=512, use_cache=False, engine: str = DEFAULT_ENGINE, embeddings_path=None) -> dict:
    t0 = time.perf_counter()
    score_fn, info = load_engine(model, engine, cache_dir)
    imgs = _images(data, resize, cache_dir, use_cache)
    scores = score_fn(imgs.images, batch_size=batch_size)
    tau = info["threshold"] if threshold is None else float(threshold)
    labels = labels_from_scores(scores, tau)
    if embeddings_path:  # first: if the model has no embeddings, no label file is written either
        write_embeddings(model, imgs.images, embeddings_path, batch_size)
    write_text_atomic(out, "".join(f"{v}\n" for v in labels))
    if scores_path:
        lines = ["name,score,label"] + [f"{n},{s:.6f},{l}" for n, s, l in zip(imgs.names, scores, labels)]
        write_text_atomic(scores_path, "\n".join(lines) + "\n")
    elapsed = time.perf_counter() - t0
    return {"n": len(labels), "n_pos": int(labels.sum()), "threshold": tau, "seconds": elapsed,
            "images_per_s": len(labels) / max(elapsed, 1e-9), "scores": scores, "names": imgs.names,
            "engine": info.get("engine")}


def evaluate(model, data, labels, threshold=None, resize=False, cache_dir=None, batch_size=512,
             use_cache=False, engine: str = DEFAULT_ENGINE) -> dict:
    y = read_labels(labels, expected=len(list_images(data)))
    score_fn, info = load_engine(model, engine, cache_dir)
    imgs = _images(data, resize, cache_dir, use_cache)
    scores = score_fn(imgs.images, batch_size=batch_size)
    tau = info["threshold"] if threshold is None else float(threshold)
    s = metrics.summarize_with_ci(scores, y, tau)
    s["threshold_origin"] = "--threshold" if threshold is not None else (
        f"stored: {info.get('threshold_method')} on {info.get('threshold_source')}")
    s["model"] = str(info["model"])
    s["engine"] = info.get("engine")
    return s
