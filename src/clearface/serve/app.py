"""The clearface HTTP service (FastAPI).

* ``POST /predict`` -- one or more images as multipart field ``file`` (repeatable), or one image
  as the raw body (``Content-Type: image/*`` or ``application/octet-stream``). Answers a JSON list,
  one entry per image, in upload order: ``filename``, ``width``/``height`` (after EXIF
  orientation), ``mode``, ``preprocess`` (the step used), ``faces`` (each: ``box`` [x0, y0, x1, y1]
  in photo pixels, detector ``confidence``, ``score``, ``label``, ``class`` and ``crop``, the 64x64
  image the model saw as a PNG data URL), ``faces_found``, and the photo's own ``label``/``class``/
  ``score``/``no_face`` (largest face decides; no face: label 0, ``no_face: true``).
  ``?preprocess=crop|resize|detect`` overrides the step (default: 64x64 images are crops, others
  go through face detection); ``?saliency=1`` adds Grad-CAM overlays to at most
  ``MAX_SALIENCY_FACES`` faces per request (the others say so in ``saliency_note``).
* ``GET /health`` -- status, model, threshold, limits. ``GET /openapi.json`` -- the API schema
  (no CDN-backed ``/docs`` page). ``GET /`` -- a self-contained page (inline CSS/JS, camera mode).

Bad input is answered with a 4xx JSON ``{"error": ...}``: an empty body or no files (400), a
stalled body (408), an unsupported content type (415), too many files, a body over the size
limit, an image over the pixel limit or a request over its pixel budget (413; all checked before
any pixel is decoded), not an image or a truncated one (422). A server already busy with
``max_busy`` requests or ``max_busy_pixels`` decoded pixels answers 503 with ``Retry-After``.
Every answer carries security headers (CSP, nosniff, frame denial, referrer policy).
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import ClearfaceError
from .limits import BODY_IDLE_TIMEOUT_S, InputError, WorkGate, peek_uploads, read_body, trim_memory
from .photos import STEPS, Service

MAX_FILES = 64
MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 4096 * 4096            # per image, from its header
MAX_REQUEST_PIXELS = 2 * 4096 * 4096  # all images of one request together, from their headers
MAX_BUSY = 4                        # requests decoding/scoring at once
MAX_READERS = 16                    # request bodies being received at once
TRIM_AFTER_PIXELS = 2_000_000       # after decoding this much, give freed memory back to the system
STATIC = Path(__file__).parent / "static"
log = logging.getLogger("clearface.serve")


def _inline_hashes(html: str, tag: str) -> list[str]:
    return ["'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
            for body in re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)]


@lru_cache(maxsize=1)
def page_and_policy() -> tuple[str, str]:
    """The page and a CSP that allows exactly its inline script and style (by hash), nothing external."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    csp = "; ".join([
        "default-src 'none'",
        "script-src " + " ".join(_inline_hashes(html, "script")),
        "style-src " + " ".join(_inline_hashes(html, "style")),
        "img-src 'self' data: blob:", "media-src 'self' blob: mediastream:", "connect-src 'self'",
        "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"])
    return html, csp


@lru_cache(maxsize=1)
def favicon_bytes() -> bytes:
    """A small packaged-free icon, drawn once: a face outline in the page's green."""
    from PIL import Image, ImageDraw
    img = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse((2, 2, 29, 29), fill=(27, 127, 59, 255))
    d.ellipse((9, 10, 13, 14), fill=(255, 255, 255, 255))
    d.ellipse((18, 10, 22, 14), fill=(255, 255, 255, 255))
    d.arc((9, 12, 22, 24), 20, 160, fill=(255, 255, 255, 255), width=2)
    buf = io.BytesIO()
    img.save(buf, format="ICO", sizes=[(16, 16), (32, 32)])
    return buf.getvalue()


class SecurityHeaders:
    """ASGI middleware: the same hardening headers on every answer, errors and 404s included."""

    def __init__(self, app, csp: str):
        self.app = app
        self.headers = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                        (b"referrer-policy", b"no-referrer"), (b"content-security-policy", csp.encode()),
                        (b"permissions-policy", b"camera=(self), microphone=(), geolocation=()"),
                        (b"cross-origin-opener-policy", b"same-origin")]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


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


async def _uploads(request: Request, body: bytes, max_files: int) -> list[tuple[str, bytes]]:
    """``[(filename, bytes)]`` from a multipart body (field ``file``) or a raw image body."""
    if not body:
        raise InputError(400, "empty request body: send one or more images in multipart field 'file'")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        return await _multipart_uploads(request.headers, body, max_files)
    if ctype.startswith("image/") or ctype == "application/octet-stream":
        return [(request.headers.get("x-filename") or request.query_params.get("filename") or "upload", body)]
    raise InputError(415, f"unsupported Content-Type {ctype or '(none)'!r}: send multipart/form-data "
                     "with field 'file', or one image as image/* or application/octet-stream")


def create_app(model_path=None, engine: str = "auto", cache_dir=None, max_files: int = MAX_FILES,
               max_body_bytes: int = MAX_BODY_BYTES, max_pixels: int = MAX_PIXELS,
               max_request_pixels: int | None = None, max_busy: int = MAX_BUSY, preprocess: str | None = None,
               body_timeout: float = BODY_IDLE_TIMEOUT_S, max_readers: int = MAX_READERS):
    """The FastAPI app serving ``model_path`` (.pt, run folder or .onnx; None: packaged model)."""
    service = Service(model_path, engine, cache_dir, preprocess)
    budget = int(max_request_pixels) if max_request_pixels is not None else max(int(max_pixels), MAX_REQUEST_PIXELS)
    limits = {"max_files": int(max_files), "max_body_bytes": int(max_body_bytes), "max_pixels": int(max_pixels),
              "max_request_pixels": budget, "max_busy": int(max_busy),
              "max_readers": int(max_readers)}
    gate = WorkGate(max_busy, budget, max_readers=max_readers)
    html, csp = page_and_policy()
    # No /docs or /redoc: FastAPI's pages load Swagger/ReDoc from a CDN. The schema alone stays.
    app = FastAPI(title="clearface", version=__version__, docs_url=None, redoc_url=None,
                  description="Binary face classifier: 1 = clean face, 0 = occluded face.")
    app.add_middleware(SecurityHeaders, csp=csp)
    app.state.service, app.state.gate, app.state.limits = service, gate, limits

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError):
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(ClearfaceError)
    async def _clearface_error(request: Request, exc: ClearfaceError):
        return error(int(getattr(exc, "status", 422)), str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail), exc.headers)

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
        return service.health(limits)

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return HTMLResponse(html)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(favicon_bytes(), media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})

    @app.post("/predict")
    async def predict(request: Request, saliency: bool = False, preview: bool = False, preprocess: str | None = None):
        if preprocess is not None and preprocess not in STEPS:
            raise InputError(422, f"preprocess {preprocess!r}: choose from {', '.join(STEPS)}")
        with gate.reading():  # 503 now rather than bodies piling up; held until the uploads are parsed
            body = await read_body(request.receive, request.headers, limits["max_body_bytes"], body_timeout)
            uploads = await _uploads(request, body, limits["max_files"])
            del body
            headers = peek_uploads(uploads, limits["max_pixels"], budget)
        pixels = sum(h.pixels for h in headers)
        with gate.working(pixels):  # 503 now rather than a queue that grows
            answer = await run_in_threadpool(service.predict, uploads, headers, limits["max_pixels"], preprocess,
                                             saliency, preview)
        del uploads
        if pixels >= TRIM_AFTER_PIXELS:
            await run_in_threadpool(trim_memory)
        return answer

    return app


def run_server(model_path=None, host: str = "127.0.0.1", port: int = 8000, engine: str = "auto",
               log_level: str = "info", preprocess: str | None = None) -> None:
    """Serve until interrupted; see :func:`clearface.serve.server.run_server`."""
    from .server import run_server as _run
    _run(model_path, host=host, port=port, engine=engine, log_level=log_level, preprocess=preprocess)
