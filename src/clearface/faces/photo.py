"""Open any photo as RGB: size checked from the header first, EXIF orientation applied, every mode made RGB.

The pixel limit is enforced before a single pixel is decoded (PIL reads the size from the header
on ``open``), so a decompression bomb costs nothing. Errors are :class:`ClearfaceError` naming the
photo; ``.status`` is 413 for "too large" and 422 for anything else (the service answers with it).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ClearfaceError

DEFAULT_MAX_PIXELS = 40_000_000  # a 48 MP phone photo is refused; 40 MP decodes in about 0.5 s


def photo_error(message: str, status: int = 422) -> ClearfaceError:
    exc = ClearfaceError(message)
    exc.status = status
    return exc


def _sixteen_bit_to_8(img: Image.Image) -> Image.Image:
    """16-bit grey ("I;16*") and 32-bit int ("I") / float ("F") -> 8-bit "L", scaled, not clipped."""
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float64)
        top = 1.0 if np.nanmax(arr, initial=0) <= 1.0 else (255.0 if np.nanmax(arr, initial=0) <= 255 else 65535.0)
    else:
        arr = arr.astype(np.float64)
        # "I" comes from 16-bit PNGs (0..65535) but may hold 8-bit values: scale only when needed.
        top = 65535.0 if (img.mode.startswith("I;16") or arr.max(initial=0) > 255) else 255.0
    arr = np.clip(np.nan_to_num(arr) * (255.0 / top), 0, 255).round().astype(np.uint8)
    return Image.fromarray(arr, "L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparency is composed onto white (as a viewer shows it)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        return _sixteen_bit_to_8(img).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode in ("P", "L", "RGB") and "transparency" in img.info):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, img).convert("RGB")
    return img.convert("RGB")  # P, L, 1, CMYK, YCbCr, LAB, HSV


def open_photo(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Bytes of a photo -> decoded RGB ``PIL.Image`` with EXIF orientation applied.

    Raises :class:`ClearfaceError` naming ``name``: over ``max_pixels`` (checked from the header,
    ``.status = 413``), or not a readable / truncated image (``.status = 422``).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > max_pixels:
            raise photo_error(f"{name}: photo is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}", 413)
        if w < 1 or h < 1:
            raise photo_error(f"{name}: photo has no pixels ({w}x{h})")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
            img = ImageOps.exif_transpose(img)
        return to_rgb(img)
    except ClearfaceError:
        raise
    except Image.DecompressionBombError as exc:
        raise photo_error(f"{name}: photo is too large to decode ({exc})", 413) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, TypeError) as exc:
        raise photo_error(f"{name}: corrupt or truncated image ({exc})") from None
