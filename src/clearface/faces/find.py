"""One detected face and the search for all of them in a photo."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .framing import cut_face
from .photo import to_rgb


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
