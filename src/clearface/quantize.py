"""int8 ONNX: static quantisation of a float ONNX export with onnxruntime's quantisation tools.

Weights are quantised per output channel, activations per tensor with ranges measured on
calibration images (uint8 ``(N, 3, 64, 64)``, e.g. the validation part; never the held-out part).
The float export's clearface metadata is carried over, with a ``quantization`` entry saying how
the file was made; tau is the float model's unless a tau re-chosen on labelled validation images
for the int8 scores is given (``threshold=``), in which case ``threshold_source`` says so.

Format choice (measured with ``benchmarks/bench_int8.py`` on the 2-core x86 machine, AVX2):
QDQ with uint8 activations and int8 weights (U8S8) is what onnxruntime fuses into its fastest
int8 kernels on x86; S8S8 and the QOperator format are kept as options for measuring.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from .errors import ClearfaceError

FORMATS = ("qdq", "qoperator")
ACTIVATIONS = ("u8", "s8")
CALIBRATIONS = ("minmax", "percentile", "entropy")
DEFAULT_CALIBRATION_IMAGES = 1000
DEFAULT_PERCENTILE = 99.999  # onnxruntime's own default for percentile calibration
DEFAULT_FALLBACK_AGREEMENT = 0.999


def calibration_sample(n_images: int, count: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``count`` images drawn without replacement (all of them if fewer)."""
    if n_images <= count:
        return np.arange(n_images)
    return np.sort(np.random.default_rng(seed).choice(n_images, count, replace=False))


def _reader(images: np.ndarray, batch_size: int):
    from onnxruntime.quantization import CalibrationDataReader

    from .export import INPUT_NAME

    class UInt8ImageReader(CalibrationDataReader):
        """Feeds uint8 CHW images to the calibrator as the graph's float input in [0, 1]."""

        def __init__(self):
            self.start = 0

        def get_next(self):
            if self.start >= len(images):
                return None
            chunk = np.asarray(images[self.start:self.start + batch_size], dtype=np.float32) / 255.0
            self.start += batch_size
            return {INPUT_NAME: chunk}

        def rewind(self):
            self.start = 0

    return UInt8ImageReader()


def _read_meta(proto) -> dict:
    return {e.key: e.value for e in proto.metadata_props}


def quantize_onnx(float_onnx, out, images: np.ndarray, fmt: str = "qdq", activations: str = "u8",
                  per_channel: bool = True, calibration: str = "minmax", preprocess: bool = True,
                  threshold: float | None = None, threshold_source: str | None = None,
                  batch_size: int = 64, reduce_range: bool = True, exclude_ops: tuple = (),
                  percentile: float = DEFAULT_PERCENTILE, calibration_cache=None) -> dict:
    """Write the int8 version of the clearface ONNX export ``float_onnx`` to ``out``.

    ``images``: uint8 ``(N, 3, 64, 64)`` calibration images. ``threshold``: tau re-chosen for the
    int8 scores (``threshold_source`` says on what); None keeps the float export's tau.
    ``percentile`` (with ``calibration="percentile"``): the share of each tensor's absolute values
    its range must cover; onnxruntime's default 99.999. ``calibration_cache``: a JSON file of the
    measured ranges, written on the first call and read (instead of calibrating) on later ones,
    so variants of one model (other ``exclude_ops``) share one calibration. Written
    under a temporary name and renamed. Returns the metadata stored (decoded).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from .export import decode_meta, onnx_output

    if fmt not in FORMATS or activations not in ACTIVATIONS or calibration not in CALIBRATIONS:
        raise ClearfaceError(f"int8: unknown setting (format {fmt!r} of {FORMATS}, activations {activations!r} "
                             f"of {ACTIVATIONS}, calibration {calibration!r} of {CALIBRATIONS})")
    if images is None:  # ranges measured before (a recipe): no calibration run
        if calibration_cache is None or not Path(calibration_cache).is_file():
            raise ClearfaceError("int8: calibration images are needed unless calibration_cache holds the ranges")
    else:
        images = np.asarray(images) if not isinstance(images, np.ndarray) else images
        if images.ndim != 4 or images.shape[1:] != (3, 64, 64) or images.dtype != np.uint8 or not len(images):
            raise ClearfaceError(f"int8: calibration images must be uint8 (N, 3, 64, 64), N >= 1; got "
                                 f"{images.dtype} {tuple(images.shape)}")
    float_onnx, out = Path(float_onnx), onnx_output(out)
    src = onnx.load(str(float_onnx))
    meta = decode_meta(_read_meta(src), float_onnx)

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[calibration]
    act_type = QuantType.QUInt8 if activations == "u8" else QuantType.QInt8
    settings = {"format": fmt, "activations": activations, "weights": "s8", "per_channel": bool(per_channel),
                "calibration": calibration, "calibration_images": None if images is None else int(len(images)),
                "pre_process": bool(preprocess),
                "reduce_range": bool(reduce_range), "float_ops": list(exclude_ops)}
    if calibration == "percentile":
        if not 0 < percentile <= 100:
            raise ClearfaceError(f"int8: percentile must be in (0, 100], got {percentile}")
        settings["percentile"] = float(percentile)
    if calibration != "minmax" and images is not None and len(images) > batch_size:
        # the histogram calibrators stack per-batch outputs: every batch must have the same size
        images = images[:len(images) // batch_size * batch_size]
    with tempfile.TemporaryDirectory(prefix="clearface_int8_", dir=out.parent) as tmp:
        model_in = float_onnx
        if preprocess:
            from onnxruntime.quantization.shape_inference import quant_pre_process
            model_in = Path(tmp) / "pre.onnx"
            quant_pre_process(str(float_onnx), str(model_in), skip_symbolic_shape=False)
        quantized = Path(tmp) / "int8.onnx"
        exclude = []
        if exclude_ops:  # node names live in the graph: parse it (again) only when ops are kept in float
            graph = onnx.load(str(model_in)).graph
            exclude = [n.name for n in graph.node if n.op_type in exclude_ops or n.name in exclude_ops]
        # No CalibMaxIntermediateOutputs: onnxruntime 1.32 clears the collected batches at that count
        # without folding them into the ranges (so a multiple of it raises "No data is collected" and
        # any other count calibrates on the last few batches only). MinMax keeps just a min and max
        # per tensor and channel per batch, so memory stays small without it.
        extra = {"ActivationSymmetric": activations == "s8", "CalibPercentile": float(percentile)}
        quantize_static(str(model_in), str(quantized), None if images is None else _reader(images, batch_size),
                        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        per_channel=per_channel, reduce_range=reduce_range, nodes_to_exclude=exclude,
                        activation_type=act_type, weight_type=QuantType.QInt8,
                        calibrate_method=method, extra_options=extra,
                        calibration_cache_path=None if calibration_cache is None else str(calibration_cache))
        meta = dict(meta, quantization=settings)
        if threshold is not None:
            meta = _with_threshold(meta, threshold, threshold_source)
        _save_with_meta(onnx.load(str(quantized)), meta, out)
    return meta


def _with_threshold(meta: dict, tau: float, source: str | None) -> dict:
    from .modelfile import check_threshold
    tau = check_threshold(tau, "int8 threshold")
    return dict(meta, float_threshold=meta.get("float_threshold", meta["threshold"]), threshold=tau,
                threshold_source=source)


def _save_with_meta(proto, meta: dict, out: Path) -> None:
    """``proto`` with ``meta`` as its clearface metadata, written to ``out`` atomically."""
    from .export import stamp_metadata
    from .outputs import write_bytes_atomic
    stamp_metadata(proto, meta, "clearface binary face classifier, int8 (static quantisation): "
                   "score = P(class 1 = clean face)")
    try:
        write_bytes_atomic(out, proto.SerializeToString())
    except OSError as exc:
        raise ClearfaceError(f"{out}: cannot write ONNX file ({exc})") from None


def set_threshold(path, tau: float, source: str) -> dict:
    """Store a re-chosen tau (and where it was chosen) in an int8 export; the float tau is kept
    as ``float_threshold``."""
    from .export import read_metadata
    return set_metadata(path, _with_threshold(read_metadata(path), tau, source))


def set_metadata(path, meta: dict) -> dict:
    """Replace the clearface metadata of the int8 export ``path`` by ``meta`` (atomically)."""
    import onnx
    p = Path(path)
    _save_with_meta(onnx.load(str(p)), meta, p)
    return meta


def logit(scores) -> np.ndarray:
    """log(s / (1 - s)) in float64, scores clipped to [1e-7, 1 - 1e-7] so 0 and 1 stay finite."""
    s = np.clip(np.asarray(scores, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(s / (1 - s))


def near_threshold(scores, tau: float, margin: float) -> np.ndarray:
    """Boolean mask: scores within ``margin`` (in logits) of ``tau``, where int8 rounding can flip a label."""
    return np.abs(logit(scores) - logit(tau)) < margin


def choose_fallback_margin(float_scores, int8_scores, tau: float, agreement: float = DEFAULT_FALLBACK_AGREEMENT) -> float:
    """The narrowest band around ``tau`` (in logits) inside which re-scoring with the float model
    makes at least ``agreement`` of these images' labels equal the float labels.

    An image keeps a wrong int8 label only when its int8 score lies outside the band, so with
    ``k`` flips allowed the margin is just above the (k+1)-th farthest flip (0: no band needed).
    """
    f, q = np.asarray(float_scores), np.asarray(int8_scores)
    if f.shape != q.shape or not f.size:
        raise ClearfaceError(f"fallback margin: need as many float as int8 scores (>= 1), got {f.size} and {q.size}")
    if not 0 <= agreement <= 1:
        raise ClearfaceError(f"fallback agreement must be in [0, 1], got {agreement}")
    flips = (f >= tau) != (q >= tau)
    allowed = int(np.floor((1 - agreement) * f.size + 1e-9))
    if flips.sum() <= allowed:
        return 0.0
    distance = np.sort(np.abs(logit(q[flips]) - logit(tau)))[::-1]
    return float(np.nextafter(distance[allowed], np.inf))


GATES = {"agreement": 0.995, "hter_shift": 0.002, "speedup": 1.7}


def int8_gates(val_labels, float_val, int8_val, test_labels, float_test, int8_test, float_unlabelled,
               int8_unlabelled, float_tau: float | None, speedup: float | None, rule: str = "min_hter",
               source: str = "validation part") -> dict:
    """Issue 14's three gates for shipping int8 instead of float.

    - ``agreement``: float labels (``float_tau``, what ships; None: tau chosen by ``rule`` on the
      float validation scores) vs int8 labels (tau re-chosen by
      ``rule`` on the int8 validation scores) on unlabelled images, >= 99.5 %;
    - ``hter_shift``: held-out HTER of int8 minus float, each at its own tau chosen on validation,
      within +-0.002;
    - ``speedup``: int8 images/s over float images/s (measured by the caller, same run), >= 1.7.
    """
    from .calibration import choose_and_score, labels_from_scores
    f = choose_and_score(float_val, val_labels, rule, source, float_test, test_labels)
    q = choose_and_score(int8_val, val_labels, rule, source, int8_test, test_labels)
    float_tau = f["threshold"] if float_tau is None else float(float_tau)
    fl = labels_from_scores(float_unlabelled, float_tau)
    agreement = float(np.mean(fl == labels_from_scores(int8_unlabelled, q["threshold"])))
    shift = float(q["test"]["hter"] - f["test"]["hter"])
    passed = {"agreement": agreement >= GATES["agreement"], "hter_shift": abs(shift) <= GATES["hter_shift"],
              "speedup": speedup is not None and speedup >= GATES["speedup"]}
    return {"agreement": agreement, "agreement_n": int(len(fl)),
            "agreement_same_tau": float(np.mean(fl == labels_from_scores(int8_unlabelled, float_tau))),
            "hter_shift": shift, "speedup": speedup, "float": f, "int8": q, "threshold": q["threshold"],
            "passed": passed, "passes": all(passed.values()), "limits": dict(GATES)}


def export_int8(model, out, calib_data, calib_labels=None, calib_images: int = DEFAULT_CALIBRATION_IMAGES,
                cache_dir=None, calib_part: str | None = None,
                fallback_agreement: float | None = DEFAULT_FALLBACK_AGREEMENT,
                **settings) -> dict:
    """``clearface export --int8``: the int8 ONNX of a model file, calibrated on ``calib_data``.

    ``calib_data``: a zip/folder of images like the ones to be scored, e.g. the model's validation
    images (never its held-out ones); ``calib_images`` of them (a seeded sample) calibrate the
    activation ranges. ``calib_part="val"``: ``calib_data``/``calib_labels`` are the model's own
    training data, and only its validation part (rebuilt from the split stored in the model file)
    is used, so the held-out part stays unseen. With ``calib_labels`` (one 0/1 per image), tau is
    re-chosen on those images for the int8 scores by the model's threshold rule; otherwise the
    float model's tau is kept.

    ``fallback_agreement`` (model files only): the band around the float tau inside which the
    float model re-scores the int8 scores (:class:`clearface.engines.FallbackEngine`) is chosen on
    all the calibration-data images as the narrowest that makes this share of their labels equal
    the float labels (:func:`choose_fallback_margin`); stored as ``fallback`` with the model file's
    sha256, so the int8 file is only ever paired with the float weights it was measured against.
    None: no band (pure int8 only).
    """
    from .calibration import fit_threshold
    from .data import load_images, read_labels
    from .engines import OnnxEngine, load_engine
    from .export import read_metadata
    from .modelfile import load_model_file, resolve_model_path
    from .outputs import file_sha256

    labels = read_labels(calib_labels) if calib_labels is not None else None
    path = resolve_model_path(model)
    blob = None
    if path.suffix == ".onnx":  # a float export: quantise it as it is
        float_onnx, meta = path, read_metadata(path)
        rule = meta.get("threshold_method")
        if calib_part is not None:
            raise ClearfaceError(f"--calib-part needs the model file (.pt), whose stored split it rebuilds; {path} is an ONNX export")
    else:
        blob = load_model_file(model)
        rule = blob.get("threshold_method")
        engine = load_engine(blob["path"], "onnx", cache_dir=cache_dir, blob=blob)
        float_onnx, meta = Path(engine.info["onnx"]), engine.meta
    if meta.get("quantization"):
        raise ClearfaceError(f"{float_onnx}: already an int8 export")
    loaded = load_images(calib_data, cache_dir=cache_dir)
    imgs, source = loaded.images, Path(calib_data).name
    if labels is not None and len(labels) != len(imgs):
        raise ClearfaceError(f"{calib_labels}: {len(labels)} labels but {len(imgs)} images in {calib_data}")
    if calib_part is not None:
        imgs, labels, source = _model_part(blob, loaded, labels, calib_part, calib_data, calib_labels)
    calib = np.ascontiguousarray(imgs[calibration_sample(len(imgs), calib_images)])
    out = Path(out).expanduser()
    with tempfile.TemporaryDirectory(prefix="clearface_int8_", dir=out.parent) as tmp:
        as_recipe = out.suffix.lower() == ".json"
        onnx_out = Path(tmp) / "int8.onnx" if as_recipe else out
        ranges = Path(tmp) / "ranges.json" if as_recipe else None  # written by onnxruntime's calibrator
        meta = quantize_onnx(float_onnx, onnx_out, calib, calibration_cache=ranges, **settings)
        need_int8 = labels is not None or (fallback_agreement is not None and blob is not None)
        int8_scores = OnnxEngine(onnx_out).score(imgs) if need_int8 else None
        if labels is not None:
            rule = rule or "min_hter"
            tau = fit_threshold(int8_scores, labels, rule)
            meta = set_threshold(onnx_out, tau, f"{rule} on {source} ({len(labels)} labelled images), int8 scores")
        if fallback_agreement is not None and blob is not None:
            float_tau = float(blob["threshold"])
            float_scores = engine.score(imgs)  # the float export's session, already open
            margin = choose_fallback_margin(float_scores, int8_scores, float_tau, fallback_agreement)
            band = near_threshold(int8_scores, float_tau, margin)
            fallback = {"margin_logit": margin, "threshold": float_tau, "agreement_target": float(fallback_agreement),
                        "chosen_on": f"{source} ({len(imgs)} images)", "band_share": float(band.mean()),
                        "agreement_without": float(np.mean((float_scores >= float_tau) == (int8_scores >= float_tau))),
                        "source_sha256": file_sha256(blob["path"])}
            meta = set_metadata(onnx_out, dict(meta, fallback=fallback))
        if as_recipe:
            write_recipe(onnx_out, ranges, settings, out)
    return {**meta, "path": str(out)}


# An int8 recipe (``export --int8 --out MODEL.int8.json``) is the int8 file without its weights: the
# quantisation settings, the activation ranges the calibration measured, the clearface metadata and
# the sha256 of the int8 file they made. A few kB instead of MBs, so a big model (the ensemble) can
# ship its int8 version; the engine rebuilds the file from the float export on first use and uses
# it only when the rebuild is byte-identical to the file that was measured.
RECIPE_FORMAT = "clearface-int8-recipe/1"


def write_recipe(int8_onnx: Path, ranges: Path, settings: dict, out: Path) -> None:
    import onnxruntime

    from .export import read_metadata
    from .outputs import file_sha256, write_text_atomic
    recipe = {"format": RECIPE_FORMAT, "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
              "ranges": json.loads(Path(ranges).read_text()), "meta": read_metadata(int8_onnx),
              "int8_sha256": file_sha256(int8_onnx), "onnxruntime": onnxruntime.__version__}
    try:
        write_text_atomic(out, json.dumps(recipe))
    except OSError as exc:
        raise ClearfaceError(f"{out}: cannot write int8 recipe ({exc})") from None


def read_recipe(path) -> dict:
    """An int8 recipe, checked for its keys (one line naming the file otherwise)."""
    p = Path(path)
    try:
        recipe = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClearfaceError(f"{p}: not a readable int8 recipe ({type(exc).__name__})") from None
    keys = ("settings", "ranges", "meta", "int8_sha256")
    if not isinstance(recipe, dict) or recipe.get("format") != RECIPE_FORMAT or not all(k in recipe for k in keys):
        raise ClearfaceError(f"{p}: not a clearface int8 recipe (format {RECIPE_FORMAT})")
    return recipe


def build_from_recipe(float_onnx, recipe_path, out) -> dict:
    """Rebuild the int8 file of ``recipe_path`` from ``float_onnx`` into ``out``; refused (nothing
    written) unless it is byte-identical to the file the recipe's figures were measured on."""
    import onnxruntime

    from .outputs import file_sha256
    recipe, out = read_recipe(recipe_path), Path(out)
    settings = dict(recipe["settings"])
    settings["exclude_ops"] = tuple(settings.get("exclude_ops") or ())
    with tempfile.TemporaryDirectory(prefix="clearface_int8_", dir=out.parent) as tmp:
        ranges, built = Path(tmp) / "ranges.json", Path(tmp) / "int8.onnx"
        ranges.write_text(json.dumps(recipe["ranges"]))
        quantize_onnx(float_onnx, built, None, calibration_cache=ranges, **settings)
        set_metadata(built, recipe["meta"])
        if file_sha256(built) != recipe["int8_sha256"]:
            raise ClearfaceError(f"{recipe_path}: the int8 model rebuilt here differs from the one measured "
                                 f"(onnxruntime {onnxruntime.__version__} here, {recipe.get('onnxruntime')} there)")
        built.replace(out)
    return recipe["meta"]


CALIB_PARTS = ("val",)


def _model_part(blob, loaded, labels, part: str, calib_data, calib_labels):
    """The images (and labels) of the model's ``part`` of ``calib_data``, rebuilt from its stored split."""
    from .data.split import split_from_config
    if part not in CALIB_PARTS:
        raise ClearfaceError(f"--calib-part {part!r}: choose from {', '.join(CALIB_PARTS)}")
    if labels is None:
        raise ClearfaceError("--calib-part needs --calib-labels: the split is rebuilt from the images and their labels")
    cfg = (blob or {}).get("config") or {}
    if not all(k in cfg for k in ("val_fraction", "holdout", "holdout_seed", "seed")):
        raise ClearfaceError(f"{blob['path']}: model file stores no training split (was it made by clearface train?)")
    if int(cfg.get("folds") or 1) > 1:
        raise ClearfaceError(f"{blob['path']}: a k-fold model has no single validation part; give --calib-data without --calib-part")
    parts = split_from_config(cfg, loaded.hashes, labels)
    idx = np.flatnonzero(parts == part)
    if not idx.size:
        raise ClearfaceError(f"{calib_data}: no image falls in the model's {part} part (is it the model's training data?)")
    return loaded.images[idx], labels[idx], f"the {part} part of {Path(calib_data).name}"
