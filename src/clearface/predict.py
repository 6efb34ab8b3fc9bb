"""Scoring whole image sets with a model file: ``predict`` (labels) and ``evaluate`` (metrics)."""

from __future__ import annotations

import time

import numpy as np

from . import metrics
from .calibration import labels_from_scores
from .data import list_images, read_labels
from .engines import DEFAULT_ENGINE, FallbackEngine, TorchEngine, load_engine
from .errors import ClearfaceError
from .modelfile import load_model_file, model_file_path
from .outputs import atomic_path, write_text_atomic
from .preprocess import step_arg


def _score(model, data, threshold, preprocess, cache_dir, batch_size, use_cache, engine, blob=None, loaded=None,
           auto_int8=False):
    """``(prepared, scores, tau, engine info)``: one score per file; tau is ``threshold`` or the
    model's stored one; ``preprocess`` (a step name) overrides the model file's step; ``blob``: the
    model file when the caller has already read it; ``loaded``: a TorchEngine already built from it;
    ``auto_int8``: see :func:`clearface.engines.load_engine` (predict: yes, evaluate: no)."""
    from .preprocess import prepare_and_score, resolve, step_source
    # spin_wait off: files decode in a thread beside the scoring (clearface.data.stream)
    eng = (loaded if loaded is not None and engine == "torch"
           else load_engine(model, engine, cache_dir, blob=blob, spin_wait=False, auto_int8=auto_int8))
    step, framing = resolve(step_source(eng), preprocess)
    tau = eng.info["threshold"] if threshold is None else float(threshold)
    if isinstance(eng, FallbackEngine):  # re-score in float around the tau that labels, stored or given
        eng.tau = tau
    prepared, scores = prepare_and_score(data, step, eng.score, batch_size, framing, cache_dir, use_cache)
    info = dict(eng.info, step=step)
    if isinstance(eng, FallbackEngine):
        info.update(rescored_in_float=eng.rescored)
    return prepared, scores, tau, info


def embedder(model) -> TorchEngine:
    """The PyTorch engine that gives ``--embeddings``, checked before anything is scored."""
    mpath = model_file_path(model)
    if mpath.suffix == ".onnx":
        raise ClearfaceError(f"{mpath}: --embeddings needs the PyTorch model file, not an ONNX export")
    eng = TorchEngine(load_model_file(mpath))
    eng.embedding_net()
    return eng


def write_embeddings(eng: TorchEngine, images: np.ndarray, path, batch_size: int = 512) -> tuple:
    """Save the first member's ``embed(x)`` vectors (e.g. facenet_seed's 128-d) as ``.npy``."""
    emb = eng.embed(images, batch_size)
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, emb)
    return emb.shape


def predict(model, data, out, scores_path=None, threshold=None, resize=False, cache_dir=None,
            batch_size=512, use_cache=False, engine: str = DEFAULT_ENGINE, embeddings_path=None,
            preprocess: str | None = None, faces_path=None) -> dict:
    """Label every file of ``data``: one 0/1 line per file in ``out``, in numeric order.

    With the ``detect`` step a file is a photo: its label is its largest face's label, and 0 when it
    has no usable face; ``faces_path`` (CSV) lists every face (see :func:`clearface.preprocess.faces_csv`).
    """
    t0 = time.perf_counter()
    step = step_arg(preprocess, resize)
    if faces_path and step not in (None, "detect"):
        raise ClearfaceError(f"--faces lists the faces found in photos: it needs --preprocess detect, not {step}")
    embed = embedder(model) if embeddings_path else None  # a model without embeddings: one line, nothing scored
    prepared, scores, tau, info = _score(model, data, threshold, step, cache_dir, batch_size, use_cache, engine,
                                         None if embed is None else embed.blob, loaded=embed, auto_int8=True)
    if faces_path and info["step"] != "detect":
        raise ClearfaceError(f"--faces lists the faces found in photos: the model's step is {info['step']}; "
                             "pass --preprocess detect")
    labels = labels_from_scores(scores, tau)
    if embed is not None:
        write_embeddings(embed, prepared.images, embeddings_path, batch_size)
    write_text_atomic(out, "".join(f"{v}\n" for v in labels))
    if scores_path:
        lines = ["name,score,label"] + [f"{n},{s:.6f},{l}" for n, s, l in zip(prepared.names, scores, labels)]
        write_text_atomic(scores_path, "\n".join(lines) + "\n")
    if faces_path:
        from .preprocess import faces_csv
        write_text_atomic(faces_path, faces_csv(prepared, tau))
    elapsed = time.perf_counter() - t0
    result = {"n": len(labels), "n_pos": int(labels.sum()), "threshold": tau, "seconds": elapsed,
              "images_per_s": len(labels) / max(elapsed, 1e-9), "scores": scores, "names": prepared.names,
              "engine": info.get("engine"), "preprocess": info["step"]}
    if "rescored_in_float" in info:
        result["rescored_in_float"] = info["rescored_in_float"]
    if prepared.faces is not None:
        result.update(n_faces=prepared.n_faces, n_no_face=int((~prepared.has_face).sum()))
    return result


def evaluate(model, data, labels, threshold=None, resize=False, cache_dir=None, batch_size=512,
             use_cache=False, engine: str = DEFAULT_ENGINE, preprocess: str | None = None) -> dict:
    """Metrics at tau on labelled files. With ``detect``, a photo's score is its largest face's
    score, and a photo without a usable face scores 0.0 (called 0)."""
    y = read_labels(labels, expected=len(list_images(data)))
    prepared, scores, tau, info = _score(model, data, threshold, step_arg(preprocess, resize), cache_dir,
                                         batch_size, use_cache, engine)
    s = metrics.summarize_with_ci(scores, y, tau)
    s["threshold_origin"] = "--threshold" if threshold is not None else (
        f"stored: {info.get('threshold_method')} on {info.get('threshold_source')}")
    s["model"] = str(info["model"])
    s["engine"] = info.get("engine")
    s["preprocess"] = info["step"]
    if prepared.faces is not None:
        s["no_face"] = int((~prepared.has_face).sum())
        s["no_face_rule"] = "a photo without a usable face scores 0.0 (class 0); otherwise its largest face decides"
    return s
