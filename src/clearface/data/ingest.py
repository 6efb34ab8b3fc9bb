"""Read a zip or folder of numerically named images and its label file, validate, and cache.

Images are decoded once into an ``N x 3 x 64 x 64`` uint8 ``.npy`` (memory-mapped on reuse), kept
by :mod:`clearface.data.cache` under a key of the source's content, so later runs start at once.
Every problem is reported as a :class:`ClearfaceError` naming the file, entry, line or value;
nothing is written under its final name until it is complete.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import re
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from ..errors import ClearfaceError
from ..outputs import write_text_atomic  # noqa: F401  (re-exported: the one atomic writer)

SIZE = 64
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_NUMBER = re.compile(r"^\d+$")


@dataclass
class ImageSet:
    """Decoded images (``N x 3 x 64 x 64`` uint8, CHW), their entry names and pixel hashes."""

    images: np.ndarray
    names: list[str]
    hashes: np.ndarray  # uint64 per image; equal pixels -> equal hash (used to keep duplicates together)
    source: str

    def __len__(self) -> int:
        return len(self.names)


# ---------------------------------------------------------------------------- listing

# Names are split with str methods, not PurePosixPath: building 4 path objects per entry made listing
# an 80,000-image zip take seconds; these give the same parts for entry names.
def _basename(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1]


def _stem_suffix(name: str) -> tuple[str, str]:
    base = _basename(name)
    i = base.rfind(".")
    return (base[:i], base[i:]) if 0 < i < len(base) - 1 else (base, "")  # pathlib's rule


def _is_skippable(name: str) -> bool:
    return name.endswith("/") or _basename(name).startswith(".") or "__MACOSX" in name.split("/")


def _order_entries(names: list[str], source: str) -> list[str]:
    """Sort image entries numerically; reject non-numeric, repeated or gapped numbering."""
    if not names:
        raise ClearfaceError(f"{source}: contains no images")
    numbered = []
    for name in names:
        stem = _stem_suffix(name)[0]
        if not _NUMBER.match(stem):
            raise ClearfaceError(f"{source}: image name {name!r} is not a number (expected e.g. 000001.jpg)")
        numbered.append((int(stem), name))
    numbered.sort()
    for (a, name_a), (b, name_b) in zip(numbered, numbered[1:]):
        if a == b:
            raise ClearfaceError(f"{source}: {name_a!r} and {name_b!r} have the same number")
        if b != a + 1:
            raise ClearfaceError(f"{source}: image numbers jump from {name_a!r} to {name_b!r} ({b - a - 1} missing)")
    return [name for _, name in numbered]


def list_images(path: str | os.PathLike) -> list[str]:
    """Entry names (zip) or relative paths (folder) of the images, in numeric order."""
    p = Path(path)
    if not p.exists():
        raise ClearfaceError(f"{p}: no such file or folder")
    if p.is_dir():
        names = [str(f.relative_to(p).as_posix()) for f in p.rglob("*")
                 if f.is_file() and not _is_skippable(f.relative_to(p).as_posix())]
        return _checked(names, p)
    if not zipfile.is_zipfile(p):
        raise ClearfaceError(f"{p}: not a zip file (give a .zip of images or a folder)")
    st = p.stat()
    return list(_zip_listing(p, p.resolve(), st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=4)
def _zip_listing(p: Path, resolved: Path, size: int, mtime_ns: int) -> tuple[str, ...]:
    """A zip's checked, ordered image names, kept per (file, size, mtime): one command lists its
    data more than once (labels count, cache, stream), and 80,000 entries take about a second."""
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ClearfaceError(f"{p}: unreadable zip ({exc})") from None
    names = []
    for info in infos:
        n = info.filename
        if n.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", n) or ".." in n.replace("\\", "/").split("/"):
            raise ClearfaceError(f"{p}: unsafe entry {n!r} (absolute path or '..')")
        if not _is_skippable(n):
            names.append(n)
    return tuple(_checked(names, p))


def _checked(names: list[str], p: Path) -> list[str]:
    unknown = [n for n in names if _stem_suffix(n)[1].lower() not in IMAGE_SUFFIXES]
    if unknown:
        raise ClearfaceError(f"{p}: {unknown[0]!r} is not an image file (suffix not in {sorted(IMAGE_SUFFIXES)})")
    return _order_entries(names, str(p))


def listed(path, limit: int | None = None) -> tuple[Path, list[str]]:
    """``(path, names)``: the source (``~`` expanded) and its images in order, the first ``limit`` if given."""
    p = Path(path).expanduser()
    names = list_images(p)
    return p, (names[:int(limit)] if limit else names)


# ---------------------------------------------------------------------------- decoding

DECODE_STEPS = ("crop", "resize")  # the steps that give one 64x64 image per file (``detect`` finds faces)


def decode_step(step=None, resize: bool | None = None) -> str:
    """The decoding step: ``crop`` (strict 64x64 RGB) or ``resize``; the old ``resize`` bool maps onto it."""
    if isinstance(step, bool):  # positional callers of the old decode_image(data, name, resize)
        step, resize = None, step
    if step is None:
        step = "resize" if resize else "crop"
    if step not in DECODE_STEPS:
        if step == "detect":
            raise ClearfaceError("the detect step finds faces in photos (predict, evaluate, report); "
                                 "it does not give one 64x64 image per file here: use crop or resize")
        raise ClearfaceError(f"unknown preprocessing step {step!r} (choose from crop, resize, detect)")
    return step


def _colour_jpeg64(data: bytes) -> np.ndarray | None:
    """A 64x64 colour JPEG decoded by simplejpeg, else None (PIL then decodes it, or names what is
    wrong). Same pixels as PIL: both run libjpeg-turbo with its accurate DCT and smooth chroma
    upsampling (checked on all 100,000 crops of the data, ``benchmarks/bench_decode.py``), at a quarter
    of the cost per crop, since no PIL objects are built; decoding then takes less of the core
    that ``predict`` shares with scoring. Anything unusual (other sizes, grey or CMYK, a warning
    from libjpeg, a damaged file) goes to PIL, so those messages and rules stay PIL's."""
    if data[:2] != b"\xff\xd8":  # not a JPEG
        return None
    try:
        h, w, colourspace, _ = simplejpeg.decode_jpeg_header(data)
        if (h, w) != (SIZE, SIZE) or colourspace not in ("YCbCr", "RGB"):
            return None
        return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False,
                                      strict=True).transpose(2, 0, 1)
    except ValueError:
        return None


def decode_image(data: bytes, name: str, step="crop") -> np.ndarray:
    """Bytes -> ``3 x 64 x 64`` uint8. Step ``crop``: anything but 64x64 RGB is an error naming the
    file; ``resize``: any size and mode is converted (EXIF orientation applied)."""
    step = decode_step(step)
    if step == "crop" and (arr := _colour_jpeg64(data)) is not None:
        return arr
    try:
        with Image.open(io.BytesIO(data)) as img:
            if step == "crop" and (img.size != (SIZE, SIZE) or img.mode != "RGB"):
                raise ClearfaceError(
                    f"{name}: image is {img.size[0]}x{img.size[1]} {img.mode}, expected {SIZE}x{SIZE} RGB "
                    "(pass --preprocess resize (alias --resize) to squash any image to 64x64, or --preprocess detect to find faces in photos)")
            img.load()
            if step == "resize":
                from PIL import ImageOps
                img = ImageOps.exif_transpose(img)
            arr = to_rgb64(img)
    except ClearfaceError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ClearfaceError(f"{name}: corrupt or truncated image ({exc})") from None
    return arr


def to_rgb64(img: Image.Image) -> np.ndarray:
    """Any PIL image -> 64x64 RGB, CHW uint8. The one conversion used by ``--preprocess resize``."""
    from ..faces.photo import to_rgb  # grey, CMYK, 16-bit, palette, alpha (on white) -> RGB
    img = to_rgb(img)
    if img.size != (SIZE, SIZE):
        img = img.resize((SIZE, SIZE), Image.BILINEAR, reducing_gap=2.0)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def _pixel_hash(arr: np.ndarray) -> int:
    return int.from_bytes(hashlib.blake2b(arr.tobytes(), digest_size=8).digest(), "little")


@contextlib.contextmanager
def entry_reader(path) -> Iterator:
    """``read(name) -> (bytes, shown)`` over one zip/folder, the zip opened once (its directory of
    tens of thousands of entries costs more to parse than a chunk of images to read); an unreadable
    entry is an error naming it, ``shown`` is how messages name the file."""
    p = Path(path)
    zf = None if p.is_dir() else zipfile.ZipFile(p)

    def read(name: str) -> tuple[bytes, str]:
        shown = str(p / name) if zf is None else f"{p}:{name}"
        try:
            return ((p / name).read_bytes() if zf is None else zf.read(name)), shown
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ClearfaceError(f"{shown}: unreadable entry ({exc})") from None

    try:
        yield read
    finally:
        if zf is not None:
            zf.close()


def decode_into(read, names: list[str], step: str, out: np.ndarray, hashes: np.ndarray | None = None) -> None:
    """Decode ``names`` (through an :func:`entry_reader`) into ``out[i]``, and their pixel hashes into ``hashes``."""
    for i, name in enumerate(names):
        arr = decode_image(*read(name), step)
        out[i] = arr
        if hashes is not None:
            hashes[i] = _pixel_hash(arr)


def _decode_range(path: str, names: list[str], step: str, out_path: str | None, offset: int):
    """Worker: decode ``names`` into ``out_path[offset:]`` (or return them); return hashes."""
    mm = np.load(out_path, mmap_mode="r+") if out_path else None
    out = mm[offset:offset + len(names)] if out_path else np.empty((len(names), 3, SIZE, SIZE), np.uint8)
    hashes = np.empty(len(names), np.uint64)
    with entry_reader(path) as read:
        decode_into(read, names, step, out, hashes)
    if out_path:
        mm.flush()
        return hashes, None
    return hashes, out


def _workers(n: int, workers: int | None) -> int:
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)), 8)
    return max(1, min(workers, n // 2000 or 1))


def decode_all(path, names: list[str], step="crop", out_path: str | None = None,
               workers: int | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """Decode every image, in parallel processes when there are enough of them."""
    step = decode_step(step)
    n_workers = _workers(len(names), workers)
    chunks = np.array_split(np.arange(len(names)), n_workers)
    if n_workers == 1:
        hashes, arr = _decode_range(str(path), names, step, out_path, 0)
        return arr, hashes
    # Workers pay for their own imports; fork keeps that cheap on Linux. They end with this process.
    from .pool import process_pool
    with process_pool(n_workers) as pool:
        futs = [pool.submit(_decode_range, str(path), [names[i] for i in c], step, out_path, int(c[0]) if len(c) else 0)
                for c in chunks]
        results = [f.result() for f in futs]
    hashes = np.concatenate([r[0] for r in results])
    arr = None if out_path else np.concatenate([r[1] for r in results])
    return arr, hashes


# ---------------------------------------------------------------------------- cache

def default_cache_dir() -> Path:
    env = os.environ.get("CLEARFACE_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clearface"


def load_images(path, step: str | None = None, cache_dir: str | os.PathLike | None = None,
                use_cache: bool = True, workers: int | None = None, limit: int | None = None,
                resize: bool | None = None) -> ImageSet:
    """Images of a zip/folder as an :class:`ImageSet`, from the cache when the source is unchanged.

    ``step``: ``crop`` (default; 64x64 RGB or an error) or ``resize`` (see :mod:`clearface.preprocess`);
    ``resize=True`` is the old spelling of ``step="resize"``. The cache is keyed by the step.
    ``limit`` decodes only the first N images (smoke runs, tests) without touching the rest.
    See :mod:`clearface.data.cache` for when a cached set is reused.
    """
    step = decode_step(step, resize)
    p, names = listed(path, limit)
    if not use_cache:
        arr, hashes = decode_all(p, names, step, None, workers)
        return ImageSet(arr, names, hashes, str(p))
    from .cache import load_cached
    return load_cached(p, names, step, limit, cache_dir, workers)


# ---------------------------------------------------------------------------- labels

def read_labels(path, expected: int | None = None) -> np.ndarray:
    """One 0/1 per line (blank trailing lines allowed) -> int8 array."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ClearfaceError(f"{p}: no such label file")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClearfaceError(f"{p}: unreadable label file ({exc})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    labels = np.empty(len(lines), np.int8)
    for i, line in enumerate(lines):
        v = line.strip()
        if v not in ("0", "1"):
            raise ClearfaceError(f"{p}:{i + 1}: label {v!r} is not 0 or 1")
        labels[i] = int(v)
    if not len(labels):
        raise ClearfaceError(f"{p}: no labels")
    if expected is not None and len(labels) != expected:
        raise ClearfaceError(f"{p}: {len(labels)} labels but {expected} images")
    return labels


def load_labelled(data, labels, limit: int | None = None, **kw) -> tuple[ImageSet, np.ndarray]:
    """Validate both inputs (the cheap label checks first), then decode."""
    names = list_images(data)
    y = read_labels(labels, expected=len(names))
    if limit:
        y = y[:int(limit)]
    return load_images(data, limit=limit, **kw), y

