"""The face detector: facenet-pytorch's MTCNN (weights inside its wheel; nothing is downloaded).

``detect(img)`` returns boxes, confidences and 5 landmarks (left eye, right eye, nose, mouth
left, mouth right, as seen in the photo) in photo pixels. For speed the detector looks at a copy
of the photo no larger than ``DETECT_MAX_SIDE`` and ignores faces smaller than ``min_face_px``:
the work per photo is then bounded whatever the photo's size.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from ..errors import ClearfaceError

INSTALL = "pip install --no-deps facenet-pytorch==2.6.0 requests"
MIN_FACE_PX = 32          # smallest usable face (detector box side, photo pixels): its crop is ~55 px, about native; smaller ones are mostly blur (and a bigger minimum keeps the pyramid short)
DETECT_MAX_SIDE = 640     # the detector sees the photo at most this large (faces >= longer side / 32 still found)
DETECT_MIN_FACE = 20      # ... and looks for faces of at least this many pixels in that copy
THRESHOLDS = (0.8, 0.8, 0.7)   # MTCNN stage thresholds (P, R, O-net); 0.8 on the first two prunes candidate boxes (87 -> 63 ms a 500x400 photo, one core) and found the same pasted faces (121 of 130)
MIN_CONFIDENCE = 0.90     # final face probability below this is not a face (logos, textures)
PYRAMID_FACTOR = 0.709


@functools.lru_cache(maxsize=1)
def load_detector():
    """The MTCNN nets on CPU, built once per process. Missing package -> ClearfaceError with the install command."""
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # requests' chardet warning on import
            from facenet_pytorch import MTCNN
    except ImportError as exc:
        raise ClearfaceError(f"the face detector needs facenet-pytorch ({exc}); install it with: {INSTALL}") from None
    try:
        import torch
        mtcnn = MTCNN(keep_all=True, device="cpu", min_face_size=DETECT_MIN_FACE, thresholds=list(THRESHOLDS),
                      factor=PYRAMID_FACTOR, select_largest=True, post_process=False)
    except Exception as exc:  # noqa: BLE001 - a broken install shows up here
        raise ClearfaceError(f"the face detector could not be built ({type(exc).__name__}: {exc}); "
                             f"reinstall it with: {INSTALL}") from None
    # Channels-last weights make every conv output channels-last, and CPU max-pooling is 3-20x faster
    # in that layout than in NCHW (the nets' ceil-mode pools were 27 % of detection time): detection
    # takes 0.73x the CPU with the same boxes and landmarks (to 1e-4 px), measured on composed photos.
    for net in (mtcnn.pnet, mtcnn.rnet, mtcnn.onet):
        net.to(memory_format=torch.channels_last)
    return mtcnn


def min_face_px(size: tuple[int, int]) -> float:
    """Smallest face (box side, photo pixels) looked for in a photo of ``size``."""
    scale = min(1.0, DETECT_MAX_SIDE / max(size))
    return max(MIN_FACE_PX, DETECT_MIN_FACE / scale)


def detect(img: Image.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes N x 4, confidences N, landmarks N x 5 x 2)`` in photo pixels, largest box first.

    Only faces with confidence >= ``MIN_CONFIDENCE`` and box side >= ``min_face_px`` are kept.
    """
    import torch

    mtcnn = load_detector()  # first: a missing package is reported with the install command
    from facenet_pytorch.models.utils.detect_face import detect_face
    w, h = img.size
    scale = min(1.0, DETECT_MAX_SIDE / max(w, h))
    small = img if scale == 1.0 else img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    sx, sy = w / small.size[0], h / small.size[1]
    minsize = max(DETECT_MIN_FACE, MIN_FACE_PX * small.size[0] / w)
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
    if min(small.size) < 12:
        return empty
    arr = np.asarray(small, dtype=np.uint8)
    with torch.inference_mode():  # the nets only read their weights: threads may share them
        boxes, points = detect_face(arr[None], minsize, mtcnn.pnet, mtcnn.rnet, mtcnn.onet,
                                    list(THRESHOLDS), PYRAMID_FACTOR, "cpu")
    boxes, points = np.asarray(boxes[0], np.float64), np.asarray(points[0], np.float64)
    if boxes.size == 0:
        return empty
    boxes = boxes.reshape(-1, 5)
    points = points.reshape(-1, 5, 2)
    conf = boxes[:, 4]
    b = boxes[:, :4] * np.array([sx, sy, sx, sy])
    p = points * np.array([sx, sy])
    side = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    keep = (conf >= MIN_CONFIDENCE) & (side >= MIN_FACE_PX)
    b, conf, p = b[keep], conf[keep], p[keep]
    order = np.argsort(-(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), kind="stable")
    return b[order].astype(np.float32), conf[order].astype(np.float32), p[order].astype(np.float32)
