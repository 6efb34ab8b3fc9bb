"""ONNX export of a model file, and :class:`OnnxScorer` to score with onnxruntime.

The exported graph is the very :func:`clearface.inference.build_scorer` module (normalisation,
flip TTA and ensemble averaging included): input ``image`` float32 ``(N, 3, 64, 64)`` in [0, 1],
output ``score`` float32 ``(N,)``, the class-1 probability, with a dynamic batch axis. Everything
needed to turn scores into labels (tau and where it came from, the preprocessing, the class
meaning, TTA, members, clearface version) is kept in the ONNX ``metadata_props`` as JSON strings.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from .errors import ClearfaceError

ONNX_FORMAT = "clearface-onnx"
ONNX_FORMAT_VERSION = 1
OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "score"
# metadata_props keys; every value is a JSON string
META_KEYS = ("format", "format_version", "clearface_version", "threshold", "threshold_method",
             "threshold_source", "preprocess", "classes", "positive_class", "score", "tta", "members",
             "source_model", "source_sha256", "input", "output")


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (non-Linux)
        return max(1, os.cpu_count() or 1)


def _metadata(blob: dict, sha256: str | None) -> dict:
    from . import __version__
    pre = blob["preprocess"]
    return {
        "format": ONNX_FORMAT,
        "format_version": ONNX_FORMAT_VERSION,
        "clearface_version": blob.get("clearface_version") or __version__,
        "exported_by": __version__,
        "threshold": float(blob["threshold"]),
        "threshold_method": blob.get("threshold_method"),
        "threshold_source": blob.get("threshold_source"),
        "preprocess": {"size": int(pre.get("size", 64)), "mean": [float(v) for v in pre["mean"]],
                       "std": [float(v) for v in pre["std"]],
                       "input": "RGB, CHW, uint8 / 255 -> float32 in [0, 1]; (x - mean) / std is inside the graph"},
        "classes": blob.get("classes"),
        "positive_class": blob.get("positive_class", 1),
        "score": blob.get("score"),
        "tta": blob.get("tta", "none"),
        "members": [{"model": m["model"], "model_kwargs": m.get("model_kwargs") or {}} for m in blob["members"]],
        "source_model": Path(blob.get("path", "")).name or None,
        "source_sha256": sha256,
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["N", 3, 64, 64], "range": [0, 1]},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["N"]},
    }


def _torch_export(scorer, path: Path, opset: int) -> str:
    """Write the graph to ``path``; the TorchScript exporter first (fast), torch.export as fallback."""
    import torch
    example = torch.rand(2, 3, 64, 64)
    errors = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(scorer, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              opset_version=opset, do_constant_folding=True, dynamo=False)
        return "torchscript"
    except Exception as exc:  # noqa: BLE001 - any exporter failure: try the other one
        errors.append(f"torchscript exporter: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
    try:
        batch = torch.export.Dim("batch", min=1, max=1 << 20)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(scorer, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_shapes={"x": {0: batch}}, opset_version=max(opset, 18), dynamo=True,
                              external_data=False, verbose=False)
        return "dynamo"
    except Exception as exc:  # noqa: BLE001
        errors.append(f"dynamo exporter: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
    raise ClearfaceError("ONNX export failed (" + "; ".join(errors) + ")")


def export_onnx(model, out, opset: int = OPSET, check: bool = True) -> dict:
    """Export the model file (or run folder; None = packaged model) ``model`` to ``out`` (.onnx).

    Written under a temporary name and renamed, so ``out`` is either absent or complete. With
    ``check`` the file is reloaded in onnxruntime and compared with PyTorch on random images.
    Returns the stored metadata (plus ``path``, ``exporter`` and ``max_abs_diff``).
    """
    from .inference import load_model_file, resolve_model_path
    return export_blob(load_model_file(resolve_model_path(model)), out, opset, check)


def export_blob(blob: dict, out, opset: int = OPSET, check: bool = True) -> dict:
    """:func:`export_onnx` for an already loaded model file (``load_model_file``)."""
    import onnx
    import torch

    from .inference import build_scorer

    scorer = build_scorer(blob)
    out = Path(out).expanduser()
    if out.suffix != ".onnx":
        raise ClearfaceError(f"{out}: the output file name must end in .onnx")
    if not out.parent.exists():
        raise ClearfaceError(f"{out.parent}: no such folder")
    src = blob.get("path")
    meta = _metadata(blob, file_sha256(src) if src and Path(src).is_file() else None)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}.onnx")
    try:
        exporter = _torch_export(scorer, tmp, opset)
        proto = onnx.load(str(tmp))
        del proto.metadata_props[:]
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, json.dumps(v)
        proto.producer_name = "clearface"
        proto.doc_string = "clearface binary face classifier: score = P(class 1 = clean face)"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        diff = None
        if check:
            x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
            with torch.inference_mode():
                ref = scorer(x).float().numpy()
            got = _session(tmp, 1).run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
            diff = float(np.max(np.abs(got - ref)))
            if not got.shape == ref.shape or not diff <= 1e-4:
                raise ClearfaceError(f"{out}: exported graph disagrees with PyTorch (max |diff| {diff:.3g})")
        os.replace(tmp, out)
    except OSError as exc:
        raise ClearfaceError(f"{out}: cannot write ONNX file ({exc})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return {**meta, "path": str(out), "exporter": exporter, "max_abs_diff": diff}


def _session(path, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def read_metadata(path) -> dict:
    """The clearface metadata of an exported file, decoded from JSON."""
    import onnx
    p = Path(path)
    if not p.exists():
        raise ClearfaceError(f"{p}: no such ONNX file")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors vary
        raise ClearfaceError(f"{p}: not a readable ONNX file ({type(exc).__name__})") from None
    return _decode_meta({e.key: e.value for e in proto.metadata_props}, p)


def _decode_meta(raw: dict, p: Path) -> dict:
    meta = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except ValueError:
            meta[k] = v
    if meta.get("format") != ONNX_FORMAT or "threshold" not in meta:
        raise ClearfaceError(f"{p}: not a clearface ONNX export (no '{ONNX_FORMAT}' metadata; "
                             "make one with `clearface export`)")
    if int(meta.get("format_version", 0)) > ONNX_FORMAT_VERSION:
        raise ClearfaceError(f"{p}: made by a newer clearface (ONNX format {meta['format_version']}); upgrade clearface")
    return meta


class OnnxScorer:
    """Score uint8 ``(N, 3, 64, 64)`` images with an exported model in onnxruntime (CPU)."""

    def __init__(self, path, threads: int | None = None):
        p = Path(path).expanduser()
        if not p.exists():
            raise ClearfaceError(f"{p}: no such ONNX file")
        if not p.is_file():
            raise ClearfaceError(f"{p}: not a file")
        try:
            self.session = _session(p, threads or available_cores())
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidProtobuf types
            msg = str(exc).splitlines()[0][:200] if str(exc) else ""
            raise ClearfaceError(f"{p}: not a loadable ONNX model ({type(exc).__name__}: {msg})") from None
        raw = self.session.get_modelmeta().custom_metadata_map
        self.meta = _decode_meta(dict(raw), p)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
            raise ClearfaceError(f"{p}: expected input '{INPUT_NAME}' and output '{OUTPUT_NAME}'")
        self.path = p
        m = self.meta
        self.info = {"threshold": float(m["threshold"]), "threshold_method": m.get("threshold_method"),
                     "threshold_source": m.get("threshold_source"), "tta": m.get("tta"),
                     "clearface_version": m.get("clearface_version"), "model": str(p),
                     "members": [mm["model"] if isinstance(mm, dict) else mm for mm in m.get("members") or []],
                     "engine": "onnx"}

    def score(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Class-1 probabilities (float32) of uint8 ``(N, 3, 64, 64)`` images, in order."""
        images = np.asarray(images) if not isinstance(images, np.ndarray) else images
        if images.ndim != 4 or images.shape[1:] != (3, 64, 64):
            raise ClearfaceError(f"expected images of shape (N, 3, 64, 64), got {tuple(images.shape)}")
        out = np.empty(len(images), np.float32)
        batch_size = max(1, int(batch_size))
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            x = chunk.astype(np.float32) if chunk.dtype != np.float32 else np.array(chunk)
            if chunk.dtype == np.uint8:
                x /= 255.0
            out[start:start + len(x)] = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0].reshape(-1)
        return out

    __call__ = score
