"""Photo front end: open any photo, find its faces, cut each one as the training crops are framed.

>>> img = open_photo(data, "me.jpg", max_pixels=40_000_000)
>>> faces = find_faces(img)           # largest first; [] when no usable face
>>> faces[0].crop.shape               # (3, 64, 64) uint8: exactly what the model scores

``facenet_pytorch`` (and torch) are imported on first detection only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .detector import INSTALL, MIN_FACE_PX, load_detector, min_face_px
from .framing import cut_face, default_framing
from .photo import DEFAULT_MAX_PIXELS, open_photo, to_rgb

__all__ = ["Face", "find_faces", "open_photo", "load_detector", "cut_face", "default_framing", "to_rgb",
           "DEFAULT_MAX_PIXELS", "MIN_FACE_PX", "INSTALL", "min_face_px"]


@dataclass
class Face:
    """One detected face: ``box`` (x0, y0, x1, y1) and ``landmarks`` (5 x 2: left eye, right eye, nose,
    mouth left, mouth right) in photo pixels, the detector's ``confidence``, and ``crop``, the
    ``3 x 64 x 64`` uint8 cut the model scores."""

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: np.ndarray
    crop: np.ndarray

    def as_dict(self) -> dict:
        return {"box": [round(float(v), 1) for v in self.box], "confidence": round(float(self.confidence), 4),
                "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks]}


def find_faces(img, framing: dict | None = None) -> list[Face]:
    """Every usable face of an RGB ``PIL.Image``, largest first, each cut with ``framing``
    (default: the measured framing shipped with the package). No face -> ``[]``."""
    from .detector import detect
    img = to_rgb(img)
    boxes, conf, points = detect(img)
    arr = np.asarray(img, dtype=np.uint8)
    return [Face(tuple(float(v) for v in b), float(c), p, cut_face(arr, b, p, framing))
            for b, c, p in zip(boxes, conf, points)]
