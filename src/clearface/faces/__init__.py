"""Photo front end: open any photo, find its faces, cut each one as the training crops are framed.

>>> img = open_photo(data, "me.jpg", max_pixels=40_000_000)
>>> faces = find_faces(img)           # largest first; [] when no usable face
>>> faces[0].crop.shape               # (3, 64, 64) uint8: exactly what the model scores

``facenet_pytorch`` (and torch) are imported on first detection only.
"""

from __future__ import annotations

from .detector import INSTALL, MIN_FACE_PX, load_detector, min_face_px
from .find import Face, find_faces
from .framing import cut_face, default_framing
from .photo import DEFAULT_MAX_PIXELS, open_photo, to_rgb

__all__ = ["Face", "find_faces", "open_photo", "load_detector", "cut_face", "default_framing", "to_rgb",
           "DEFAULT_MAX_PIXELS", "MIN_FACE_PX", "INSTALL", "min_face_px"]
