"""What one request may cost the service, checked before the cost is paid.

* :func:`read_body` -- the body, refused (413) over its byte limit and cut off (408) when the
  client stalls: a body shorter than its ``Content-Length`` must not hold a connection open.
* :func:`peek_uploads` -- every upload's size from its header, before any pixel is decoded:
  one image over the per-image limit, or all of them together over the per-request budget,
  is a 413 naming the file and the budget.
* :class:`WorkGate` -- a non-blocking bound on decode/score work in flight (requests and
  pixels): an excess request is told to come back (503 + ``Retry-After``) instead of queueing,
  so memory and latency stay bounded under load.
"""

from __future__ import annotations

import asyncio
import io
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

BODY_IDLE_TIMEOUT_S = 5.0  # longest wait for the next piece of a body before answering 408


class InputError(Exception):
    """A problem with the request, answered as ``{"error": message}`` with ``status`` (and headers)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


async def read_body(receive, headers, limit: int, idle_timeout: float = BODY_IDLE_TIMEOUT_S) -> bytes:
    """The request body from the ASGI ``receive`` channel, within ``limit`` bytes and ``idle_timeout``.

    A declared ``Content-Length`` over the limit is refused before reading; a chunked body is
    counted while reading. A client that goes quiet mid-body gets 408 after ``idle_timeout``
    seconds; one that disconnects gets 400 (nobody reads it, and nothing is logged as a crash).
    """
    declared = headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise InputError(400, f"bad Content-Length header {declared!r}") from None
        if n > limit:
            raise InputError(413, f"request body is {n} bytes, over the limit of {limit} bytes")
    body = bytearray()
    while True:
        try:
            message = await asyncio.wait_for(receive(), idle_timeout)
        except asyncio.TimeoutError:
            raise InputError(408, f"request body stalled: nothing received for {idle_timeout:g} s after "
                             f"{len(body)} bytes") from None
        if message["type"] == "http.disconnect":
            raise InputError(400, f"client disconnected after {len(body)} bytes of the body")
        body += message.get("body", b"")
        if len(body) > limit:
            raise InputError(413, f"request body is over the limit of {limit} bytes")
        if not message.get("more_body", False):
            return bytes(body)


@dataclass(frozen=True)
class Header:
    """What an image header says, read without decoding pixels."""

    width: int
    height: int
    mode: str
    format: str | None

    @property
    def pixels(self) -> int:
        return self.width * self.height


def peek_header(data: bytes, name: str, max_pixels: int) -> Header:
    """Size and mode from the header only; 400 empty, 413 over ``max_pixels``, 422 not an image."""
    from PIL import Image, UnidentifiedImageError
    if not data:
        raise InputError(400, f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                head = Header(img.size[0], img.size[1], img.mode, img.format)
    except Image.DecompressionBombError as exc:
        raise InputError(413, f"{name}: image too large ({exc})") from None
    except UnidentifiedImageError:
        raise InputError(422, f"{name}: not an image (or a format this server cannot read)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as exc:
        raise InputError(422, f"{name}: corrupt or truncated image header ({type(exc).__name__})") from None
    if head.width < 1 or head.height < 1:
        raise InputError(422, f"{name}: image has no pixels ({head.width}x{head.height})")
    if head.pixels > max_pixels:
        raise InputError(413, f"{name}: image is {head.width}x{head.height} ({head.pixels} pixels), over the "
                         f"limit of {max_pixels} pixels per image")
    return head


def peek_uploads(uploads: list[tuple[str, bytes]], max_pixels: int, budget: int) -> list[Header]:
    """Every upload's header; 413 naming the file that takes the request over ``budget`` pixels."""
    headers, total = [], 0
    for name, data in uploads:
        head = peek_header(data, name, max_pixels)
        total += head.pixels
        if total > budget:
            raise InputError(413, f"{name}: request over its decoded-pixel budget ({total} pixels with this "
                             f"file; the budget is {budget} pixels per request)")
        headers.append(head)
    return headers


def libc():
    """The C library through ctypes (its glibc-only calls raise AttributeError elsewhere)."""
    import ctypes
    import ctypes.util
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def trim_memory() -> None:
    """Hand freed heap memory back to the system (glibc ``malloc_trim``); a no-op elsewhere.

    Called after a request that decoded a large photo, so RSS follows the work and not its peak.
    """
    try:
        libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass


class WorkGate:
    """Non-blocking admission: never a queue that grows, an excess request gets 503 + ``Retry-After``.

    * :meth:`reading`: at most ``max_readers`` bodies being received at once (each up to the
      body limit), so slow clients cannot pile bodies up in memory;
    * :meth:`working`: at most ``max_requests`` requests decoding/scoring and ``max_pixels``
      decoded pixels in flight. A request alone always fits (its own budget was checked already),
      so nothing starves.
    """

    def __init__(self, max_requests: int, max_pixels: int, max_readers: int = 16, retry_after_s: int = 1):
        self.max_requests, self.max_pixels = int(max_requests), int(max_pixels)
        self.max_readers, self.retry_after_s = int(max_readers), int(retry_after_s)
        self._lock = threading.Lock()
        self.readers = self.requests = self.pixels = self.refused = 0

    def _busy(self, what: str) -> InputError:
        self.refused += 1
        return InputError(503, f"server busy ({what}); retry in {self.retry_after_s} s",
                          headers={"Retry-After": str(self.retry_after_s)})

    @contextmanager
    def _admit(self, refusal, **take):
        """Hold ``take`` (counter name -> amount) while the block runs; 503 when ``refusal()`` names a reason.

        The check and the taking happen under one lock, so two requests cannot both pass a full budget."""
        with self._lock:
            reason = refusal()
            if reason:
                raise self._busy(reason)
            for name, amount in take.items():
                setattr(self, name, getattr(self, name) + amount)
        try:
            yield
        finally:
            with self._lock:
                for name, amount in take.items():
                    setattr(self, name, getattr(self, name) - amount)

    def reading(self):
        """A request body being received."""
        return self._admit(lambda: f"{self.readers} request bodies being received"
                           if self.readers >= self.max_readers else None, readers=1)

    def working(self, pixels: int):
        """A request being decoded and scored, holding ``pixels`` of the decode budget."""
        def refusal():
            if self.requests >= self.max_requests:
                return f"{self.requests} requests being decoded and scored"
            if self.pixels and self.pixels + pixels > self.max_pixels:
                return f"{self.pixels} pixels being decoded"
            return None
        return self._admit(refusal, requests=1, pixels=pixels)
