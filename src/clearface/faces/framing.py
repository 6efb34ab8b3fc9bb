"""Framing: where a face sits in a training crop, and cutting a photo's face the same way.

The geometry is measured on the training images themselves (``benchmarks/measure_framing.py``)
and stored as ``framing.json`` beside this module and in model files (``preprocess.framing``).
Coordinates are in units of the crop side, origin at the crop's top-left corner. Cutting a face is
the inverse: the similarity transform (scale, shift and, with ``level_eyes``, rotation) that puts the
detected anchor points where the training crops have them on average, applied to the square
[0, 1]^2; the square is cut from the photo first (edges replicated outside the photo, as image
borders usually are in the training crops), then resampled to 64x64 with antialiasing.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64
FRAMING_FILE = Path(__file__).with_name("framing.json")
ANCHORS = ("eyes", "landmarks", "box")
MAX_WORK_SIDE = 256   # the cut square is resampled at most this large before the final antialiased 64 px reduce


@functools.lru_cache(maxsize=1)
def _packaged() -> dict:
    return json.loads(FRAMING_FILE.read_text())


def default_framing() -> dict:
    """The measured framing shipped with the package (a copy: callers may change it)."""
    return json.loads(json.dumps(_packaged()))


def check_framing(framing: dict, where: str = "framing") -> dict:
    from ..errors import ClearfaceError
    try:
        anchor = framing["anchor"]
        if anchor not in ANCHORS:
            raise ValueError(f"anchor {anchor!r} not in {ANCHORS}")
        lm = np.asarray(framing["landmarks"], np.float64)
        box = np.asarray(framing["box"], np.float64)
        if lm.shape != (5, 2) or box.shape != (4,) or not (np.isfinite(lm).all() and np.isfinite(box).all()):
            raise ValueError("landmarks must be 5x2 and box 4 finite numbers")
        if not box[2] > box[0] or not box[3] > box[1]:
            raise ValueError("box must have x1 > x0 and y1 > y0")
    except (KeyError, TypeError, ValueError) as exc:
        raise ClearfaceError(f"{where}: invalid face framing ({exc})") from None
    return framing


def similarity(framing: dict, box, landmarks) -> tuple[complex, complex]:
    """``(a, b)`` complex: photo point = a * crop point + b (crop points in [0, 1]^2 as x + iy)."""
    anchor = framing["anchor"]
    level = bool(framing.get("level_eyes", True))
    if anchor == "box":
        tb = np.asarray(framing["box"], np.float64)
        bx = np.asarray(box, np.float64)
        s = np.sqrt(((bx[2] - bx[0]) * (bx[3] - bx[1])) / ((tb[2] - tb[0]) * (tb[3] - tb[1])))
        tc = complex((tb[0] + tb[2]) / 2, (tb[1] + tb[3]) / 2)
        pc = complex((bx[0] + bx[2]) / 2, (bx[1] + bx[3]) / 2)
        a = complex(s, 0)
        return a, pc - a * tc
    idx = [0, 1] if anchor == "eyes" else [0, 1, 2, 3, 4]
    q = np.asarray(framing["landmarks"], np.float64)[idx]
    p = np.asarray(landmarks, np.float64)[idx]
    q = q[:, 0] + 1j * q[:, 1]
    p = p[:, 0] + 1j * p[:, 1]
    qc, pc = q - q.mean(), p - p.mean()
    a = np.sum(np.conj(qc) * pc) / np.sum(np.abs(qc) ** 2)
    if not level:  # keep the photo's roll: scale only
        a = complex(abs(a), 0)
    return complex(a), complex(p.mean() - a * q.mean())


def cut_face(img: Image.Image | np.ndarray, box, landmarks, framing: dict | None = None) -> np.ndarray:
    """The face at ``box``/``landmarks`` cut from ``img`` as the training crops are: ``3 x 64 x 64`` uint8."""
    framing = framing or _packaged()
    arr = np.asarray(img, dtype=np.uint8)
    h, w = arr.shape[:2]
    a, b = similarity(framing, box, landmarks)
    corners = np.array([b, a + b, a * 1j + b, a * (1 + 1j) + b])
    x0, x1 = int(np.floor(corners.real.min())) - 2, int(np.ceil(corners.real.max())) + 2
    y0, y1 = int(np.floor(corners.imag.min())) - 2, int(np.ceil(corners.imag.max())) + 2
    # Cut the region first (edges replicated outside the photo), so work stays at the face's size.
    ys = np.clip(np.arange(y0, y1), 0, h - 1)
    xs = np.clip(np.arange(x0, x1), 0, w - 1)
    region = Image.fromarray(np.ascontiguousarray(arr[ys[:, None], xs[None, :]]))
    side = abs(a)
    k = max(1.0, side / MAX_WORK_SIDE)  # shrink very large faces (antialiased) before the rotation
    if k > 1.0:
        region = region.resize((max(1, round(region.size[0] / k)), max(1, round(region.size[1] / k))), Image.BILINEAR)
        kx, ky = (x1 - x0) / region.size[0], (y1 - y0) / region.size[1]
    else:
        kx = ky = 1.0
    n = int(np.clip(round(side / k), SIZE, MAX_WORK_SIDE))
    # Output pixel (x, y) of the n x n square -> crop point (x/n, y/n) -> photo -> region pixels.
    coeffs = ((a.real / n) / kx, (-a.imag / n) / kx, (b.real - x0) / kx,
              (a.imag / n) / ky, (a.real / n) / ky, (b.imag - y0) / ky)
    square = region.transform((n, n), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    if n != SIZE:
        square = square.resize((SIZE, SIZE), Image.BILINEAR)
    return np.asarray(square, dtype=np.uint8).transpose(2, 0, 1).copy()
