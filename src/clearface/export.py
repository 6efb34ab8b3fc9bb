"""ONNX export of a model file (scored by :class:`clearface.engines.OnnxEngine`).

The exported graph is the very :func:`clearface.engines.build_scorer` module (normalisation,
flip TTA and ensemble averaging included): input ``image`` float32 ``(N, 3, 64, 64)`` in [0, 1],
output ``score`` float32 ``(N,)``, the class-1 probability, with a dynamic batch axis. Everything
needed to turn scores into labels (tau and where it came from, the preprocessing, the class
meaning, TTA, members, clearface version) is kept in the ONNX ``metadata_props`` as JSON strings.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .errors import ClearfaceError
from .outputs import atomic_path, file_sha256

ONNX_FORMAT = "clearface-onnx"
ONNX_FORMAT_VERSION = 2  # 2: preprocess metadata gained step and framing
OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "score"
# metadata_props keys; every value is a JSON string
META_KEYS = ("format", "format_version", "clearface_version", "threshold", "threshold_method",
             "threshold_source", "preprocess", "classes", "positive_class", "score", "tta", "members",
             "source_model", "source_sha256", "input", "output")


def _metadata(blob: dict, sha256: str | None) -> dict:
    from . import __version__
    pre = blob["preprocess"]
    from .preprocess import stored_framing, stored_step
    return {
        "format": ONNX_FORMAT,
        "format_version": ONNX_FORMAT_VERSION,
        "clearface_version": blob.get("clearface_version") or __version__,
        "exported_by": __version__,
        "threshold": float(blob["threshold"]),
        "threshold_method": blob.get("threshold_method"),
        "threshold_source": blob.get("threshold_source"),
        "preprocess": {"size": int(pre.get("size", 64)), "mean": [float(v) for v in pre["mean"]],
                       "std": [float(v) for v in pre["std"]], "step": stored_step(blob), "framing": stored_framing(blob),
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
    from .modelfile import load_model_file, resolve_model_path
    return export_blob(load_model_file(resolve_model_path(model)), out, opset, check)


def export_blob(blob: dict, out, opset: int = OPSET, check: bool = True) -> dict:
    """:func:`export_onnx` for an already loaded model file (``load_model_file``)."""
    import onnx
    import torch

    from .engines import build_scorer

    scorer = build_scorer(blob)
    out = onnx_output(out)
    src = blob.get("path")
    meta = _metadata(blob, file_sha256(src) if src and Path(src).is_file() else None)
    try:
        with atomic_path(out, suffix=".onnx") as tmp:
            exporter = _torch_export(scorer, tmp, opset)
            proto = onnx.load(str(tmp))
            stamp_metadata(proto, meta, "clearface binary face classifier: score = P(class 1 = clean face)")
            onnx.checker.check_model(proto)
            onnx.save(proto, str(tmp))
            diff = None
            if check:
                x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
                with torch.inference_mode():
                    ref = scorer(x).float().numpy()
                got = onnx_session(tmp, 1).run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
                diff = float(np.max(np.abs(got - ref)))
                if not got.shape == ref.shape or not diff <= 1e-4:
                    raise ClearfaceError(f"{out}: exported graph disagrees with PyTorch (max |diff| {diff:.3g})")
    except OSError as exc:
        raise ClearfaceError(f"{out}: cannot write ONNX file ({exc})") from None
    return {**meta, "path": str(out), "exporter": exporter, "max_abs_diff": diff}


def onnx_output(out) -> Path:
    """``out`` as a path, refused unless it ends in ``.onnx`` and its folder exists."""
    out = Path(out).expanduser()
    if out.suffix != ".onnx":
        raise ClearfaceError(f"{out}: the output file name must end in .onnx")
    if not out.parent.is_dir():
        raise ClearfaceError(f"{out.parent}: no such folder")
    return out


def stamp_metadata(proto, meta: dict, doc: str) -> None:
    """Replace the graph's ``metadata_props`` with ``meta`` (values as JSON) and name the producer."""
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, json.dumps(v)
    proto.producer_name = "clearface"
    proto.doc_string = doc


def onnx_session(path, threads: int, spin_wait: bool = True):
    """An onnxruntime CPU session with a fixed number of intra-op threads.

    ``spin_wait``: idle intra-op threads busy-wait for the next operator (onnxruntime's default).
    That is the low-latency choice for small requests (the service: 0.85 vs 1.5 ms per image here),
    but it burns the core that a thread of the same process decoding beside the scoring needs:
    ``predict`` turns it off. Alternated in one process with the PIL decoder, streaming kept a median
    97 % of scoring-only speed without spinning against 88–94 % with it (issue 14, item 5)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    if not spin_wait:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No memory-pattern planning: it sizes one block for every tensor of a run, 1.95 GB peak at
    # batch 512 against 1.32 GB without, and those extra pages cost a fresh `predict` their page
    # faults; the speed is the same from batch 1 to 512 here.
    so.enable_mem_pattern = False
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
    return decode_meta({e.key: e.value for e in proto.metadata_props}, p)


def decode_meta(raw: dict, p: Path) -> dict:
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
