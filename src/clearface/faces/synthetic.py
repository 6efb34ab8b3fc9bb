"""Composed photos with known faces: 64x64 crops enlarged and pasted at known places on larger canvases.

Tests and benchmarks of the photo front end need photos whose faces, positions and labels are known
without downloading anything. A composed photo is a canvas (a smooth colour gradient under a mosaic of
small shuffled patches cut from other images, so it has natural colours and texture but no face
structure a detector could find) with a few crops enlarged by a good resampler (Lanczos) and pasted
without overlap. The truth kept for each pasted crop is where it sits (``crop_boxes``) and its label.
The face inside a pasted crop is where the framing geometry says it is in a training crop
(:func:`expected_face_box`).

Everything is deterministic given the seed; only numpy and PIL are used (no torch, no detector).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

PATCH = 8  # mosaic patch side in canvas pixels: far too small to hold a face (and the piece size cut)


@dataclass
class ComposedPhoto:
    """A photo and the truth about the crops pasted into it."""

    image: Image.Image  # RGB
    crop_boxes: np.ndarray  # (k, 4) float x0, y0, x1, y1: where each pasted crop sits (photo pixels)
    labels: np.ndarray  # (k,) int8: each pasted crop's own label
    sources: np.ndarray  # (k,) int: index of each pasted crop in the ``crops`` given
    meta: dict = field(default_factory=dict)


def as_pil(crop) -> Image.Image:
    """A crop as an RGB PIL image: accepts PIL, ``3 x H x W`` (the package's CHW) or ``H x W x 3`` uint8."""
    if isinstance(crop, Image.Image):
        return crop.convert("RGB")
    arr = np.asarray(crop, dtype=np.uint8)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(arr))


def enlarge(crop, side: int) -> Image.Image:
    """A crop resampled to ``side x side`` with Lanczos (the sharpest of PIL's standard filters)."""
    return as_pil(crop).resize((int(side), int(side)), Image.LANCZOS)


def _gradient(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth two-corner colour gradient, ``H x W x 3`` float in [0, 255]."""
    c0, c1 = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (np.cos(angle) * xx / max(width, 1) + np.sin(angle) * yy / max(height, 1))
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    return (c0 * (1 - t[..., None]) + c1 * t[..., None]).astype(np.float32)


def texture_array(textures) -> np.ndarray:
    """Texture images as one ``N x H x W x 3`` uint8 array (CHW arrays, HWC arrays or PIL images)."""
    if isinstance(textures, np.ndarray) and textures.ndim == 4:
        arr = textures.transpose(0, 2, 3, 1) if textures.shape[1] == 3 and textures.shape[-1] != 3 else textures
        return np.ascontiguousarray(arr, dtype=np.uint8)
    return np.stack([np.asarray(as_pil(t), dtype=np.uint8) for t in textures])


def _mosaic(width: int, height: int, textures: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A grid of ``PATCH``-pixel patches, each a random ``PATCH x PATCH`` piece of a random texture
    image, turned by a random multiple of 90 degrees: natural colours and edges, no face layout."""
    n, th, tw, _ = textures.shape
    rows, cols = -(-height // PATCH), -(-width // PATCH)
    cells = rows * cols
    pic = rng.integers(0, n, cells)
    y = rng.integers(0, th - PATCH + 1, cells)
    x = rng.integers(0, tw - PATCH + 1, cells)
    turns = rng.integers(0, 4, cells)
    d = np.arange(PATCH)
    pieces = textures[pic[:, None, None], y[:, None, None] + d[None, :, None], x[:, None, None] + d[None, None, :]]
    for k in (1, 2, 3):
        pieces[turns == k] = np.rot90(pieces[turns == k], k, axes=(1, 2))
    grid = pieces.reshape(rows, cols, PATCH, PATCH, 3).transpose(0, 2, 1, 3, 4).reshape(rows * PATCH, cols * PATCH, 3)
    return grid[:height, :width]


def make_canvas(width: int, height: int, rng: np.random.Generator, textures=None) -> Image.Image:
    """A background with no faces: gradient, plus (given ``textures``) a softened patch mosaic of them,
    plus mild noise so it is not unnaturally flat."""
    base = _gradient(width, height, rng)
    if textures is not None and len(textures):
        mosaic = Image.fromarray(_mosaic(width, height, texture_array(textures), rng)).filter(ImageFilter.GaussianBlur(1.5))
        base = 0.6 * base + 0.4 * np.asarray(mosaic, np.float32)
    base = base + 4.0 * rng.standard_normal(base.shape, dtype=np.float32)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _place(width: int, height: int, sides: list[int], rng: np.random.Generator, gap: int,
           tries: int = 200) -> list[tuple[int, int]] | None:
    """Top-left corners for squares of ``sides`` inside the canvas, at least ``gap`` apart; None if
    they do not fit after ``tries`` random draws each."""
    placed: list[tuple[int, int, int]] = []
    for side in sides:
        if side > width or side > height:
            return None
        for _ in range(tries):
            x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
            if all(x + side + gap <= px or px + ps + gap <= x or y + side + gap <= py or py + ps + gap <= y
                   for px, py, ps in placed):
                placed.append((x, y, side))
                break
        else:
            return None
    return [(x, y) for x, y, _ in placed]


def compose_photo(crops, labels, size=(500, 400), faces: int | tuple[int, int] = (1, 3),
                  face_sides=(96, 200), seed: int = 0, textures=None, gap: int = 24,
                  indices=None) -> ComposedPhoto:
    """One composed photo.

    ``crops``/``labels``: the pool to draw from (CHW uint8 arrays or PIL images, and their 0/1 labels).
    ``indices``: use exactly these crops (in this order); otherwise ``faces`` (a count or an inclusive
    range) crops are drawn at random. ``face_sides``: inclusive range of the pasted side in pixels.
    ``textures``: images the background mosaic is cut from (use images other than the pasted ones).
    """
    rng = np.random.default_rng(seed)
    width, height = int(size[0]), int(size[1])
    labels = np.asarray(labels)
    if indices is None:
        k = faces if isinstance(faces, int) else int(rng.integers(faces[0], faces[1] + 1))
        indices = rng.choice(len(crops), size=k, replace=False)
    indices = np.asarray(indices, dtype=np.int64)
    lo, hi = int(face_sides[0]), int(face_sides[1])
    hi = max(lo, min(hi, width, height))
    for shrink in (1.0, 0.8, 0.6, 0.45):  # shrink faces until they fit; never silently drop one
        sides = [max(lo, int(rng.integers(lo, hi + 1) * shrink)) for _ in indices]
        corners = _place(width, height, sides, rng, gap)
        if corners is not None:
            break
    else:
        raise ValueError(f"{len(indices)} faces of {lo}..{hi} px do not fit in {width}x{height}")
    canvas = make_canvas(width, height, rng, textures)
    for i, (x, y), side in zip(indices, corners, sides):
        canvas.paste(enlarge(crops[int(i)], side), (x, y))
    boxes = np.array([[x, y, x + s, y + s] for (x, y), s in zip(corners, sides)], np.float64).reshape(-1, 4)
    return ComposedPhoto(canvas, boxes, labels[indices].astype(np.int8), indices,
                         {"seed": seed, "size": (width, height)})


def compose_photos(crops, labels, n: int, seed: int = 0, **kw) -> list[ComposedPhoto]:
    """``n`` composed photos with seeds ``seed, seed + 1, ...``."""
    return [compose_photo(crops, labels, seed=seed + j, **kw) for j in range(n)]


def paste_one(crop, label: int, side: int, size=(500, 400), seed: int = 0, textures=None) -> ComposedPhoto:
    """One crop pasted at a random place: the photo form of one 64x64 image (front-end cost study)."""
    return compose_photo([crop], [label], size=size, indices=[0], face_sides=(side, side), seed=seed,
                         textures=textures)


def paste_image(photo: Image.Image, size=(1600, 1000), side: int = 260, seed: int = 0, textures=None) -> ComposedPhoto:
    """A whole photo (e.g. a portrait) shrunk to ``side`` px on its long edge and pasted into a large
    canvas; its ``crop_boxes`` row is where the photo sits, its label is -1 (unknown)."""
    rng = np.random.default_rng(seed)
    photo = photo.convert("RGB")
    scale = side / max(photo.size)
    w, h = max(1, round(photo.width * scale)), max(1, round(photo.height * scale))
    canvas = make_canvas(size[0], size[1], rng, textures)
    x, y = int(rng.integers(0, size[0] - w + 1)), int(rng.integers(0, size[1] - h + 1))
    canvas.paste(photo.resize((w, h), Image.LANCZOS), (x, y))
    return ComposedPhoto(canvas, np.array([[x, y, x + w, y + h]], np.float64), np.array([-1], np.int8),
                         np.array([0]), {"seed": seed, "size": tuple(size)})


def expected_face_box(crop_box, face_in_crop) -> np.ndarray:
    """Where the face should be found inside a pasted crop.

    ``face_in_crop``: the detector's face box in a training crop as fractions of the crop side
    ``(x0, y0, x1, y1)`` (see :func:`face_in_crop_from_framing`). Returns photo-pixel boxes ``(k, 4)``.
    """
    boxes = np.asarray(crop_box, np.float64).reshape(-1, 4)
    f = np.asarray(face_in_crop, np.float64)
    side = boxes[:, 2:3] - boxes[:, 0:1]
    return boxes[:, [0, 1, 0, 1]] + side * f[None, :]


def iou(a, b) -> np.ndarray:
    """Pairwise intersection over union of boxes ``a (n, 4)`` and ``b (m, 4)`` -> ``(n, m)``."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_faces(true_boxes, found_boxes, min_iou: float = 0.4) -> np.ndarray:
    """For each true box, the index of the found box matched to it (greedy by IoU, one to one), or -1."""
    m = iou(true_boxes, found_boxes)
    out = np.full(m.shape[0], -1, np.int64)
    if not m.size:
        return out
    used = set()
    for flat in np.argsort(-m, axis=None):
        i, j = np.unravel_index(flat, m.shape)
        if m[i, j] < min_iou:
            break
        if out[i] < 0 and j not in used:
            out[i] = j
            used.add(int(j))
    return out


def png_header_only(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width x height``: a decompression bomb without the bomb, for
    checking that the pixel limit is applied from the header, before any pixel is decoded."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
