"""Scoring engines: a model file (or its ONNX export) behind one ``score(images, batch_size)``.

:func:`load_engine` returns a :class:`TorchEngine` or an :class:`OnnxEngine`; both map uint8
``(N, 3, 64, 64)`` images to float32 class-1 probabilities, in order, and carry ``.info``
(threshold and where it came from, TTA, members, model path, engine name). ``--engine auto``
scores with onnxruntime through an export of the model file cached under its sha256; where the
model file has its int8 export beside it (``MODEL.int8.onnx``, made by ``export --int8`` from that
very file) and the CPU has VNNI int8 instructions, predict and serve score with
:class:`FallbackEngine`: int8, with the images near tau re-scored in float.

The torch side is also where training-time validation gets its arithmetic: :func:`tta_probability`
(normalised input -> probability averaged over members and flip views) and
:func:`score_in_batches` (the one batch loop), so validation during training and shipped
scoring cannot drift apart.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from .errors import ClearfaceError
from .modelfile import load_model_file, model_file_path, resolve_model_path

ENGINES = ("auto", "torch", "onnx", "int8")
INT8_SUFFIX = ".int8.onnx"  # the int8 export that FallbackEngine pairs with MODEL.pt lives at MODEL.int8.onnx
RECIPE_SUFFIX = ".int8.json"  # or its recipe (ranges, no weights), rebuilt into the cache on first use
DEFAULT_ENGINE = "auto"
INFO_KEYS = ("threshold", "threshold_method", "threshold_source", "tta", "clearface_version", "preprocess")


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (non-Linux)
        return max(1, os.cpu_count() or 1)


def score_in_batches(score_chunk, images, batch_size: int = 512) -> np.ndarray:
    """``score_chunk`` over ``images`` in slices of ``batch_size``, results concatenated in order."""
    batch_size = max(1, int(batch_size))
    parts = [np.asarray(score_chunk(images[s:s + batch_size])) for s in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.empty(0, np.float32)


def uint8_tensor(chunk_uint8):
    """uint8 images (numpy) -> uint8 tensor sharing their memory when it is contiguous and writable.

    A slice of a read-only cache memmap would make torch warn about writes it never does; copying it
    (only then) costs a quarter of the float copy that scoring makes anyway."""
    import torch
    return torch.from_numpy(np.require(chunk_uint8, np.uint8, ["C", "W"]))


def unit_float(chunk_uint8):
    """uint8 images (numpy) -> float tensor in [0, 1]."""
    return uint8_tensor(chunk_uint8).float().div_(255)


def tta_probability(nets, x, tta: str):
    """Class-1 probability of a normalised batch, averaged over ``nets`` and the TTA views."""
    import torch
    views = [x, torch.flip(x, dims=[3])] if tta == "flip" else [x]
    probs = [torch.sigmoid(m(v)) for m in nets for v in views]
    return torch.stack(probs, 0).mean(0)


def build_scorer(blob: dict):
    """The model file as an ``nn.Module``: float ``(N, 3, 64, 64)`` in [0, 1] -> probabilities ``(N,)``.

    The same module scores in PyTorch, is traced for the ONNX export and is explained by Grad-CAM.
    """
    import torch
    from torch import nn

    from .models import get_model

    class Scorer(nn.Module):
        def __init__(self, members, mean, std, tta):
            super().__init__()
            self.members = nn.ModuleList(members)
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
            self.tta = tta

        def forward(self, x):
            return tta_probability(self.members, (x - self.mean) / self.std, self.tta)

    members = []
    for i, spec in enumerate(blob["members"]):
        kwargs = dict(spec.get("model_kwargs") or {})
        kwargs.update(spec.get("build_kwargs") or {})  # e.g. pretrained=False: weights come from the file
        net = get_model(spec["model"], **kwargs)
        try:
            net.load_state_dict(spec["state_dict"])
        except RuntimeError as exc:
            raise ClearfaceError(f"{blob.get('path', 'model file')}: member {i} weights do not fit model "
                                 f"{spec['model']!r} ({str(exc).splitlines()[0][:200]})") from None
        members.append(net)
    pre = blob["preprocess"]
    return Scorer(members, pre["mean"], pre["std"], blob.get("tta", "none")).eval()


class TorchEngine:
    """A loaded model file scored in PyTorch (CPU, channels-last)."""

    def __init__(self, blob: dict):
        self.blob = blob
        self.scorer = build_scorer(blob)
        self.info = {k: blob.get(k) for k in INFO_KEYS}
        self.info.update(model=blob.get("path"), members=[m["model"] for m in blob["members"]], engine="torch")

    def score(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Class-1 probabilities (float32) of uint8 ``(N, 3, 64, 64)`` images, in order."""
        import torch

        def chunk(c):
            x = unit_float(c).contiguous(memory_format=torch.channels_last)
            return self.scorer(x).float().numpy()

        with torch.inference_mode():
            return score_in_batches(chunk, images, batch_size).astype(np.float32, copy=False)

    def embedding_net(self):
        """The first member, if it has ``embed(x)``; else one line saying which models do."""
        net = self.scorer.members[0]
        if not hasattr(net, "embed"):
            raise ClearfaceError(f"{self.info['model']}: model {type(net).__name__} has no embed(); "
                                 "--embeddings works with e.g. facenet_seed")
        return net

    def embed(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """The first member's ``embed(x)`` vectors (e.g. facenet_seed's 128-d)."""
        import torch
        net, s = self.embedding_net(), self.scorer
        with torch.inference_mode():
            return score_in_batches(lambda c: net.embed((unit_float(c) - s.mean) / s.std).float().numpy(),
                                    images, batch_size)

    __call__ = score


class OnnxEngine:
    """Score uint8 ``(N, 3, 64, 64)`` images with an exported model in onnxruntime (CPU)."""

    def __init__(self, path, threads: int | None = None, spin_wait: bool = True):
        from .export import INPUT_NAME, OUTPUT_NAME, decode_meta, onnx_session
        p = Path(path).expanduser()
        if not p.is_file():
            raise ClearfaceError(f"{p}: no such ONNX file" if not p.exists() else f"{p}: not a file")
        try:
            self.session = onnx_session(p, threads or available_cores(), spin_wait)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidProtobuf types
            msg = str(exc).splitlines()[0][:200] if str(exc) else ""
            raise ClearfaceError(f"{p}: not a loadable ONNX model ({type(exc).__name__}: {msg})") from None
        self.meta = m = decode_meta(dict(self.session.get_modelmeta().custom_metadata_map), p)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
            raise ClearfaceError(f"{p}: expected input '{INPUT_NAME}' and output '{OUTPUT_NAME}'")
        self.path, self._io = p, (INPUT_NAME, OUTPUT_NAME)
        self.info = {k: m.get(k) for k in INFO_KEYS}
        self.info.update(threshold=float(m["threshold"]), model=str(p),
                         engine="onnx-int8" if m.get("quantization") else "onnx",
                         members=[mm["model"] if isinstance(mm, dict) else mm for mm in m.get("members") or []])

    def score(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Class-1 probabilities (float32) of uint8 ``(N, 3, 64, 64)`` images, in order."""
        images = np.asarray(images) if not isinstance(images, np.ndarray) else images
        if images.ndim != 4 or images.shape[1:] != (3, 64, 64):
            raise ClearfaceError(f"expected images of shape (N, 3, 64, 64), got {tuple(images.shape)}")
        name_in, name_out = self._io

        def chunk(c):
            x = c.astype(np.float32) if c.dtype != np.float32 else np.array(c)
            if c.dtype == np.uint8:
                x /= 255.0
            return self.session.run([name_out], {name_in: x})[0].reshape(-1)

        return score_in_batches(chunk, images, batch_size).astype(np.float32, copy=False)

    __call__ = score


class FallbackEngine:
    """int8 scores, except that images whose int8 score lies within ``margin`` logits of tau are
    re-scored by the float model: int8 speed, float labels wherever int8 rounding could flip one.

    The margin and tau come from the int8 file's ``fallback`` entry (:func:`clearface.quantize.export_int8`
    measured them against this float model). Scores far from tau are the int8 ones, so they can
    differ from float scores by the int8 rounding; ``rescored``/``scored`` count the float share.
    """

    def __init__(self, int8: OnnxEngine, float_engine: OnnxEngine, tau: float, margin: float):
        self.int8, self.float_engine, self.tau, self.margin = int8, float_engine, float(tau), float(margin)
        self.info = dict(float_engine.info, engine="onnx-int8+float", int8=str(int8.path), fallback_margin=self.margin)
        self.scored = self.rescored = 0

    def score(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Class-1 probabilities (float32) of uint8 ``(N, 3, 64, 64)`` images, in order."""
        from .quantize import near_threshold
        scores = self.int8.score(images, batch_size)
        band = near_threshold(scores, self.tau, self.margin)
        if band.any():
            scores[band] = self.float_engine.score(np.ascontiguousarray(np.asarray(images)[band]), batch_size)
        self.scored += len(scores)
        self.rescored += int(band.sum())
        return scores

    __call__ = score


def cpu_has_vnni() -> bool:
    """Whether this CPU has the int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX) that make
    onnxruntime's int8 kernels pay; without them ``auto`` stays with float."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(line.split()))
    except OSError:
        pass
    return False


def int8_sibling(model_path: Path, suffix: str = INT8_SUFFIX) -> Path:
    """Where the int8 export of the model file ``model_path`` is looked for: ``MODEL.int8.onnx`` beside it
    (``suffix=RECIPE_SUFFIX``: its recipe, ``MODEL.int8.json``)."""
    return model_path.with_name(model_path.stem + suffix)


def _int8_from_recipe(float_engine: OnnxEngine, recipe: Path) -> Path:
    """The int8 file of ``recipe`` rebuilt from the (cached) float export, kept beside it."""
    from .outputs import file_sha256
    from .quantize import build_from_recipe
    built = float_engine.path.with_name(f"{float_engine.path.stem}-int8-{file_sha256(recipe)[:16]}.onnx")
    if not built.is_file():
        print(f"clearface: building the int8 model from {recipe.name} (once; kept in {built.parent})", file=sys.stderr)
        build_from_recipe(float_engine.path, recipe, built)
    return built


def _fallback_for(model_path: Path, model_sha: str, float_engine: OnnxEngine, spin_wait: bool, required: bool):
    """A :class:`FallbackEngine` from the model file's int8 sibling (or recipe), or None (``required``:
    one line instead). ``model_sha``: the model file's sha256, which the int8 file must record."""
    q, recipe = int8_sibling(model_path), int8_sibling(model_path, RECIPE_SUFFIX)
    make = (f"make one with: clearface export --int8 --model {model_path} --calib-data VALIDATION_IMAGES "
            f"--out {q}")
    if not q.is_file() and not recipe.is_file():
        if required:
            raise ClearfaceError(f"{model_path}: no int8 export beside it ({q.name} or {recipe.name}); {make}")
        return None
    try:
        if not q.is_file():
            q = _int8_from_recipe(float_engine, recipe)
        int8 = _onnx_for(q, spin_wait=spin_wait)
    except ClearfaceError as exc:
        if required:
            raise
        print(f"clearface: warning: {exc}; scoring in float", file=sys.stderr)
        return None
    fb = int8.meta.get("fallback") or {}
    if fb.get("source_sha256") != model_sha or "margin_logit" not in fb:
        if required:
            why = "has no float fallback band" if "margin_logit" not in fb else "was made from another model file"
            raise ClearfaceError(f"{q}: {why}; {make}")
        print(f"clearface: warning: {q} was not made from {model_path.name} (or has no fallback band); "
              "scoring in float", file=sys.stderr)
        return None
    return FallbackEngine(int8, float_engine, float(fb["threshold"]), float(fb["margin_logit"]))


def onnx_cache_path(model_file, cache_dir=None, sha256: str | None = None) -> Path:
    """Where ``--engine auto`` keeps the ONNX export of ``model_file``: keyed by its sha256 (given when
    the caller has it already)."""
    from . import __version__
    from .data.ingest import default_cache_dir
    from .export import ONNX_FORMAT_VERSION
    from .outputs import file_sha256
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return root / "onnx" / f"{(sha256 or file_sha256(model_file))[:32]}-f{ONNX_FORMAT_VERSION}-v{__version__}.onnx"


def _onnx_for(path: Path, model_path: Path | None = None, spin_wait: bool = True) -> OnnxEngine:
    try:
        eng = OnnxEngine(path, spin_wait=spin_wait)
    except ImportError as exc:  # pragma: no cover
        raise ClearfaceError(f"{path}: ONNX support is not available ({exc})") from None
    if model_path is not None:  # auto: report the user's model file, note the export used
        eng.info["model"], eng.info["onnx"] = str(model_path), str(path)
    return eng


def load_engine(model, engine: str = DEFAULT_ENGINE, cache_dir=None, blob: dict | None = None,
                spin_wait: bool = True, auto_int8: bool = False):
    """A :class:`TorchEngine` or :class:`OnnxEngine` for a .pt model file / run folder, or an .onnx export.

    ``engine``: ``torch`` scores with PyTorch; ``onnx`` and ``auto`` with onnxruntime, through a
    cached export of the model file (``<cache>/onnx/<sha256>.onnx``) made on first use. ``auto``
    falls back to PyTorch (with a warning) when the export fails; ``onnx`` raises instead.
    ``int8``: :class:`FallbackEngine` from ``MODEL.int8.onnx`` beside the model file (one line if
    there is none, or it was made from another file). With ``auto_int8`` (callers that only label
    at tau: predict, serve), ``auto`` picks it too where the CPU has VNNI; callers that use the
    scores away from tau (evaluate's AUC, reports, pseudo-label cuts) keep float under ``auto``.
    An ``.onnx`` path always runs in onnxruntime. ``blob``: the already loaded model file, so
    callers that need it too (the report) read it once. ``spin_wait``: see
    :func:`clearface.export.onnx_session` (off where a thread decodes beside the scoring).
    """
    if engine not in ENGINES:
        raise ClearfaceError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    path = resolve_model_path(model)
    if path.suffix == ".onnx":
        if engine in ("torch", "int8"):
            raise ClearfaceError(f"{path}: an ONNX export cannot run with --engine {engine} (give the .pt model file)")
        return _onnx_for(path, spin_wait=spin_wait)
    path = model_file_path(model)
    if engine == "torch":
        return TorchEngine(blob or load_model_file(path))

    from .outputs import file_sha256
    try:
        sha = file_sha256(path)  # keys the cached export and pairs an int8 sibling with this very file
        cached = onnx_cache_path(path, cache_dir, sha)
    except OSError as exc:
        raise ClearfaceError(f"{path}: cannot read model file ({exc})") from None
    from .data.cache import sweep_stale_temp
    sweep_stale_temp(cached.parent, hidden_only=True)  # half exports of killed runs
    if cached.exists():
        try:
            float_engine = _onnx_for(cached, path, spin_wait)
        except ClearfaceError:
            float_engine = None
            try:
                cached.unlink()  # damaged cache entry: export again
            except OSError:
                pass
        if float_engine is not None:
            return _with_int8(path, sha, float_engine, engine, spin_wait, auto_int8)
    blob = blob or load_model_file(path)  # a bad model file is the user's error in every engine
    try:
        from .export import export_blob
        cached.parent.mkdir(parents=True, exist_ok=True)
        export_blob(blob, cached)
        float_engine = _onnx_for(cached, path, spin_wait)
    except Exception as exc:  # noqa: BLE001 - any export/runtime problem
        if engine in ("onnx", "int8"):
            if isinstance(exc, ClearfaceError):
                raise
            raise ClearfaceError(f"{path}: ONNX export failed ({type(exc).__name__}: {exc})") from None
        print(f"clearface: warning: ONNX export of {path} failed ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}); "
              "scoring with PyTorch", file=sys.stderr)
        return TorchEngine(blob)
    return _with_int8(path, sha, float_engine, engine, spin_wait, auto_int8)


def _with_int8(model_path: Path, model_sha: str, float_engine: OnnxEngine, engine: str, spin_wait: bool,
               auto_int8: bool):
    """``float_engine``, or the int8 + float pair where ``engine`` asks for it (``int8``) or allows it
    (``auto`` with ``auto_int8``, on a CPU with VNNI)."""
    if engine == "int8" or (engine == "auto" and auto_int8 and cpu_has_vnni()):
        return _fallback_for(model_path, model_sha, float_engine, spin_wait, required=engine == "int8") or float_engine
    return float_engine
