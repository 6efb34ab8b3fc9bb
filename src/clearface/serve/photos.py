"""The service's model and what it does with one request's images: find faces, score them, answer.

Per image the preprocessing step is chosen as the CLI does (``--preprocess``): a 64x64 image
is a crop already and is scored whole (``crop``: one face, the whole image); any other size
goes through face detection (``detect``); ``?preprocess=crop|resize|detect`` overrides.
The photo's own label follows one rule: **the largest face decides; no face gives 0** (no clean
face was found) with ``no_face: true``.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import threading
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import ClearfaceError
from ..preprocess import STEPS
from .limits import Header, InputError

CROP = 64
CLASS_NAMES = {0: "occluded", 1: "clean face"}
MAX_FACES_PER_IMAGE = 16   # largest first; a crowd photo must not cost unbounded crops
MAX_SALIENCY_FACES = 4     # Grad-CAM runs backward through the model: a few faces per request
SALIENCY_PX = 128


def png_data_url(img) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _crop_url(chw: np.ndarray) -> str:
    from PIL import Image
    return png_data_url(Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0))))


class Service:
    """The loaded model and its metadata, shared by all requests; one model call at a time."""

    def __init__(self, model_path=None, engine: str = "auto", cache_dir=None, preprocess: str | None = None):
        if preprocess is not None and preprocess not in STEPS:
            raise ClearfaceError(f"--preprocess {preprocess!r}: choose from {', '.join(STEPS)}")
        from ..engines import load_engine
        engine_obj = load_engine(model_path, engine=engine, cache_dir=cache_dir, auto_int8=True)
        self._engine = engine_obj
        self.score_fn, self.info = engine_obj.score, engine_obj.info
        self.threshold = float(self.info["threshold"])
        self.preprocess = preprocess
        stored = self.info.get("preprocess")
        self.framing = stored.get("framing") if isinstance(stored, dict) else None  # measured geometry, if stored
        # The engines use every core already: running two model calls at once only thrashes.
        self.lock = threading.Lock()
        self._gradcam = None

    # ------------------------------------------------------------------ capabilities
    def detect_available(self) -> bool:
        return importlib.util.find_spec("facenet_pytorch") is not None

    def saliency_available(self) -> bool:
        return not str(self.info.get("model", "")).endswith(".onnx")

    def health(self, limits: dict) -> dict:
        info = self.info
        return {"status": "ok", "model": Path(str(info.get("model"))).name, "members": info.get("members"),
                "engine": info.get("engine"), "version": __version__,
                "model_clearface_version": info.get("clearface_version"), "threshold": self.threshold,
                "threshold_method": info.get("threshold_method"), "threshold_source": info.get("threshold_source"),
                "tta": info.get("tta"), "classes": {str(k): v for k, v in CLASS_NAMES.items()},
                "preprocess": self.preprocess or "auto (64x64: crop, other sizes: detect)",
                "detect": self.detect_available(), "limits": limits,
                "saliency": self.saliency_available(), "max_saliency_faces": MAX_SALIENCY_FACES}

    # ------------------------------------------------------------------ one request
    def predict(self, uploads: list[tuple[str, bytes]], headers: list[Header], max_pixels: int,
                step: str | None = None, saliency: bool = False, preview: bool = False) -> list[dict]:
        """Decode, find faces, score every face in one model call, and build the answer."""
        if saliency and not self.saliency_available():
            raise InputError(400, "saliency is not available for this model (needs a .pt model file and Grad-CAM)")
        photos = []
        for (name, data), head in zip(uploads, headers):
            img = _open(data, name, max_pixels)
            use = step or self.preprocess or ("crop" if img.size == (CROP, CROP) else "detect")
            faces, found = self._faces(img, name, use)
            photos.append((name, head, img.size, use, faces, found))
            del img  # only the crops are kept: the decoded photo can go now
        crops = [f["pixels"] for p in photos for f in p[4]]
        scores = iter(())
        if crops:
            with self.lock:
                scores = iter(np.asarray(self.score_fn(np.stack(crops), batch_size=64), dtype=np.float64))
        saliency_left = MAX_SALIENCY_FACES if saliency else 0
        out = []
        for name, head, (w, h), use, faces, found in photos:
            entry = {"filename": name, "width": w, "height": h, "mode": head.mode, "format": head.format,
                     "preprocess": use, "threshold": self.threshold, "faces_found": found}
            for f in faces:
                s = float(next(scores))
                f.update(score=s, label=int(s >= self.threshold), **{"class": CLASS_NAMES[int(s >= self.threshold)]})
                if saliency:
                    if saliency_left > 0:
                        f["saliency"] = self._saliency(f["pixels"])
                        saliency_left -= 1
                    else:
                        f["saliency"] = None
                        f["saliency_note"] = (f"not computed: at most {MAX_SALIENCY_FACES} faces per request "
                                              "get Grad-CAM")
                f["crop"] = _crop_url(f.pop("pixels"))
            if faces:  # largest face decides (faces come largest first)
                top = faces[0]
                entry.update(label=top["label"], score=top["score"], no_face=False, **{"class": top["class"]})
                if preview:
                    entry["preview"] = top["crop"]
            else:
                entry.update(label=0, score=None, no_face=True, **{"class": "no face found"})
            entry["faces"] = faces
            out.append(entry)
        return out

    def _faces(self, img, name: str, step: str) -> tuple[list[dict], int]:
        """``([{box, confidence, pixels}], faces found)``: the largest ``MAX_FACES_PER_IMAGE`` only."""
        w, h = img.size
        whole = [0.0, 0.0, float(w), float(h)]
        if step == "crop":
            if (w, h) != (CROP, CROP):
                raise InputError(422, f"{name}: preprocess 'crop' needs a 64x64 face crop, this image is {w}x{h} "
                                 "(use ?preprocess=detect to find the faces, or resize to squash it)")
            return [{"box": whole, "confidence": None, "pixels": np.asarray(img, np.uint8).transpose(2, 0, 1)}], 1
        if step == "resize":
            from ..data.ingest import to_rgb64
            return [{"box": whole, "confidence": None, "pixels": to_rgb64(img)}], 1
        from ..faces import find_faces
        with self.lock:  # the detector is a torch model: one call at a time, like scoring
            found = find_faces(img, self.framing)
        kept = [{**{k: v for k, v in f.as_dict().items() if k != "landmarks"},
                 "pixels": np.ascontiguousarray(f.crop, dtype=np.uint8)} for f in found[:MAX_FACES_PER_IMAGE]]
        return kept, len(found)

    def _saliency(self, chw: np.ndarray) -> str:
        from ..explain import gradcam as mod
        with self.lock:
            if self._gradcam is None:  # its own scorer (gradients), from the model file the engine already read
                from ..engines import build_scorer
                blob = getattr(self._engine, "blob", None)
                if blob is None:
                    from ..modelfile import load_model_file
                    blob = load_model_file(self.info["model"])
                self._gradcam = mod.GradCAM(build_scorer(blob))
            cam = self._gradcam(chw[None])
            # GradCAM keeps the last batch's tensors for inspection: drop them, the service never reads them
            self._gradcam.activations = self._gradcam.gradients = self._gradcam.logits = None
        return png_data_url(mod.overlay(chw, cam[0], size=SALIENCY_PX))


def _open(data: bytes, name: str, max_pixels: int):
    """The photo as RGB with EXIF orientation applied (``clearface.faces.open_photo``); errors -> 4xx."""
    from ..faces import open_photo
    try:
        return open_photo(data, name, max_pixels)
    except ClearfaceError as exc:
        raise InputError(int(getattr(exc, "status", 422)), str(exc)) from None
