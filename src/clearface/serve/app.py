"""The clearface HTTP service (FastAPI).

* ``POST /predict`` -- one or more images as multipart field ``file`` (repeatable), or one image
  as the raw body (``Content-Type: image/*`` or ``application/octet-stream``). Answers a JSON list,
  one entry per image, in upload order: ``filename``, ``label`` (0/1), ``class``, ``score``,
  ``threshold``, ``resized`` and the original ``width``/``height``/``mode``. Anything that is not
  64x64 RGB is converted with :func:`clearface.data.ingest.to_rgb64`, the same conversion as
  ``--resize``. ``?saliency=1`` adds a Grad-CAM overlay (PNG data URL) when the model is a .pt
  file; ``?preview=1`` adds the 64x64 image the model saw.
* ``GET /health`` -- status, model, members, version, threshold, limits.
* ``GET /`` -- a self-contained page (inline CSS/JS, no external assets) to drop images on.

Bad input is answered with a 4xx JSON ``{"error": ...}``: an empty body or no files (400), an
unsupported content type (415), too many files, a body over the size limit (checked from
``Content-Length`` and counted while reading) or an image over the pixel limit (413), not an
image or a truncated one (422). The pixel limit is checked on the header (``Image.open().size``)
before any pixel is decoded. Anything unexpected still answers JSON (500).
"""

from __future__ import annotations

import base64
import io
import logging
import threading
import warnings
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..data.ingest import SIZE, to_rgb64
from ..errors import ClearfaceError

MAX_FILES = 64
MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 4096 * 4096
CLASS_NAMES = {0: "occluded", 1: "clean face"}
STATIC = Path(__file__).parent / "static"
log = logging.getLogger("clearface.serve")


class InputError(Exception):
    """A problem with the request, answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def decode_upload(data: bytes, filename: str, max_pixels: int = MAX_PIXELS):
    """Bytes -> ``(3x64x64 uint8, original (w, h, mode))``; size is checked before decoding."""
    if not data:
        raise InputError(400, f"{filename}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise InputError(413, f"{filename}: image is {w}x{h} ({w * h} pixels), over the limit of "
                                     f"{max_pixels} pixels")
                if w < 1 or h < 1:
                    raise InputError(422, f"{filename}: image has no pixels ({w}x{h})")
                mode = img.mode
                img.load()
                try:
                    arr = to_rgb64(img)
                except (ValueError, OSError) as exc:
                    raise InputError(422, f"{filename}: cannot convert a {mode} image to RGB ({exc})") from None
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(413, f"{filename}: image too large ({exc})") from None
    except UnidentifiedImageError:
        raise InputError(422, f"{filename}: not an image (or a format this server cannot read)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as exc:
        raise InputError(422, f"{filename}: corrupt or truncated image ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    return arr, (w, h, mode)


def _png_data_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class Service:
    """The loaded model, its metadata and the request limits (shared by all requests)."""

    def __init__(self, model_path=None, engine: str = "auto", cache_dir=None, max_files: int = MAX_FILES,
                 max_body_bytes: int = MAX_BODY_BYTES, max_pixels: int = MAX_PIXELS):
        from ..predict import load_engine
        self.score_fn, self.info = load_engine(model_path, engine=engine, cache_dir=cache_dir)
        self.model_path = model_path
        self.threshold = float(self.info["threshold"])
        self.max_files, self.max_body_bytes, self.max_pixels = int(max_files), int(max_body_bytes), int(max_pixels)
        self.lock = threading.Lock()  # one scoring call at a time: the engine already uses every core
        self._gradcam = None
        self._gradcam_error = None

    # ------------------------------------------------------------------ saliency (optional)
    def saliency_available(self) -> bool:
        try:
            import importlib.util
            if importlib.util.find_spec("clearface.report.gradcam") is None:
                return False
        except (ImportError, ValueError):
            return False
        return not str(self.info.get("model", "")).endswith(".onnx") and self._gradcam_error is None

    def _get_gradcam(self):
        if self._gradcam is None:
            from ..inference import build_scorer, load_model_file
            from ..report.gradcam import GradCAM
            blob = load_model_file(self.info["model"])
            self._gradcam = GradCAM(build_scorer(blob))
        return self._gradcam

    def saliency(self, images: np.ndarray) -> list[str]:
        from ..report.gradcam import overlay
        with self.lock:
            cams = self._get_gradcam()(images)
        return [_png_data_url(overlay(img, cam, size=128)) for img, cam in zip(images, cams)]

    # ------------------------------------------------------------------ scoring
    def health(self) -> dict:
        info = self.info
        return {"status": "ok", "model": Path(str(info.get("model"))).name, "members": info.get("members"),
                "engine": info.get("engine"), "version": __version__,
                "model_clearface_version": info.get("clearface_version"), "threshold": self.threshold,
                "threshold_method": info.get("threshold_method"), "threshold_source": info.get("threshold_source"),
                "tta": info.get("tta"), "classes": {str(k): v for k, v in CLASS_NAMES.items()},
                "limits": {"max_files": self.max_files, "max_body_bytes": self.max_body_bytes,
                           "max_pixels": self.max_pixels},
                "saliency": self.saliency_available()}

    def predict(self, uploads: list[tuple[str, bytes]], saliency: bool = False, preview: bool = False) -> list[dict]:
        arrays, originals = [], []
        for name, data in uploads:
            arr, orig = decode_upload(data, name, self.max_pixels)
            arrays.append(arr)
            originals.append(orig)
        images = np.stack(arrays)
        with self.lock:
            scores = self.score_fn(images, batch_size=64)
        maps = None
        if saliency:
            if not self.saliency_available():
                raise InputError(400, "saliency is not available for this model (needs a .pt model file and "
                                 "clearface.report.gradcam)")
            maps = self.saliency(images)
        out = []
        for i, ((name, _), (w, h, mode), s) in enumerate(zip(uploads, originals, scores)):
            label = int(s >= self.threshold)
            resized = (w, h) != (SIZE, SIZE) or mode != "RGB"
            entry = {"filename": name, "label": label, "class": CLASS_NAMES[label], "score": float(s),
                     "threshold": self.threshold, "resized": resized, "width": w, "height": h, "mode": mode,
                     "resized_from": f"{w}x{h} {mode}" if resized else None}
            if preview:
                entry["preview"] = _png_data_url(Image.fromarray(np.ascontiguousarray(images[i].transpose(1, 2, 0))))
            if maps is not None:
                entry["saliency"] = maps[i]
            out.append(entry)
        return out


async def _read_body(request, limit: int) -> bytes:
    """The request body, refusing (413) a declared or actual size over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise InputError(400, f"bad Content-Length header {declared!r}") from None
        if n > limit:
            raise InputError(413, f"request body is {n} bytes, over the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise InputError(413, f"request body is over the limit of {limit} bytes")
    return bytes(body)


async def _multipart_uploads(headers, body: bytes, max_files: int) -> list[tuple[str, bytes]]:
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def stream():
        yield body
        yield b""

    try:
        form = await MultiPartParser(headers, stream(), max_files=max_files, max_fields=100).parse()
    except MultiPartException as exc:
        if "Too many files" in exc.message:
            raise InputError(413, f"too many files: at most {max_files} per request") from None
        raise InputError(400, f"malformed multipart body ({exc.message})") from None
    except Exception as exc:  # noqa: BLE001 - python-multipart raises its own error types
        raise InputError(400, f"malformed multipart body ({type(exc).__name__})") from None
    try:
        uploads, other = [], []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key == "file":
                    uploads.append((value.filename or f"file{len(uploads) + 1}", await value.read()))
                else:
                    other.append(key)
    finally:
        await form.close()
    if not uploads:
        hint = f" (got file fields {sorted(set(other))})" if other else ""
        raise InputError(400, f"no images: send one or more files in multipart field 'file'{hint}")
    return uploads


def create_app(model_path=None, engine: str = "auto", cache_dir=None, max_files: int = MAX_FILES,
               max_body_bytes: int = MAX_BODY_BYTES, max_pixels: int = MAX_PIXELS):
    """The FastAPI app serving ``model_path`` (.pt, run folder or .onnx; None: packaged model)."""
    service = Service(model_path, engine, cache_dir, max_files, max_body_bytes, max_pixels)
    app = FastAPI(title="clearface", version=__version__,
                  description="Binary face classifier: 1 = clean face, 0 = occluded face.")
    app.state.service = service

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError):
        return error(exc.status, exc.message)

    @app.exception_handler(ClearfaceError)
    async def _clearface_error(request: Request, exc: ClearfaceError):
        return error(422, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return error(422, "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors())
                     or "invalid request")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); see the server log")

    @app.get("/health")
    async def health():
        return service.health()

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.post("/predict")
    async def predict(request: Request, saliency: bool = False, preview: bool = False):
        body = await _read_body(request, service.max_body_bytes)
        if not body:
            raise InputError(400, "empty request body: send one or more images in multipart field 'file'")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            uploads = await _multipart_uploads(request.headers, body, service.max_files)
        elif ctype.startswith("image/") or ctype == "application/octet-stream":
            name = request.headers.get("x-filename") or request.query_params.get("filename") or "upload"
            uploads = [(name, body)]
        else:
            raise InputError(415, f"unsupported Content-Type {ctype or '(none)'!r}: send multipart/form-data "
                             "with field 'file', or one image as image/* or application/octet-stream")
        return await run_in_threadpool(service.predict, uploads, saliency, preview)

    return app


def run_server(model_path=None, host: str = "127.0.0.1", port: int = 8000, engine: str = "auto",
               log_level: str = "info") -> None:
    """Load the model (errors surface before the port opens) and serve until interrupted."""
    import sys

    import uvicorn
    app = create_app(model_path, engine=engine)
    svc = app.state.service
    print(f"clearface: serving {svc.info.get('model')} ({svc.info.get('engine')}; tau {svc.threshold:.6f}) "
          f"on http://{host}:{port}/", file=sys.stderr)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    except OSError as exc:  # pragma: no cover - e.g. port in use (uvicorn usually exits itself)
        raise ClearfaceError(f"cannot serve on {host}:{port} ({exc})") from None
