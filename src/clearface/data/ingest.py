"""Read a zip or folder of numerically named images and its label file, validate, and cache.

Images are decoded once into an ``N x 3 x 64 x 64`` uint8 ``.npy`` (memory-mapped on reuse)
beside a small JSON describing the source (size, mtime, sha256), so later runs start at once.
Every problem is reported as a :class:`ClearfaceError` naming the file, entry, line or value;
nothing is written under its final name until it is complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ClearfaceError

SIZE = 64
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CACHE_FORMAT = 1
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

def _is_skippable(name: str) -> bool:
    p = PurePosixPath(name)
    return name.endswith("/") or p.name.startswith(".") or "__MACOSX" in p.parts


def _order_entries(names: list[str], source: str) -> list[str]:
    """Sort image entries numerically; reject non-numeric, repeated or gapped numbering."""
    if not names:
        raise ClearfaceError(f"{source}: contains no images")
    numbered = []
    for name in names:
        stem = PurePosixPath(name).stem
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
    else:
        if not zipfile.is_zipfile(p):
            raise ClearfaceError(f"{p}: not a zip file (give a .zip of images or a folder)")
        try:
            with zipfile.ZipFile(p) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise ClearfaceError(f"{p}: unreadable zip ({exc})") from None
        names = []
        for info in infos:
            n = info.filename
            if n.startswith("/") or n.startswith("\\") or re.match(r"^[A-Za-z]:", n) or ".." in PurePosixPath(n.replace("\\", "/")).parts:
                raise ClearfaceError(f"{p}: unsafe entry {n!r} (absolute path or '..')")
            if not _is_skippable(n):
                names.append(n)
    unknown = [n for n in names if PurePosixPath(n).suffix.lower() not in IMAGE_SUFFIXES]
    if unknown:
        raise ClearfaceError(f"{p}: {unknown[0]!r} is not an image file (suffix not in {sorted(IMAGE_SUFFIXES)})")
    return _order_entries(names, str(p))


# ---------------------------------------------------------------------------- decoding

def decode_image(data: bytes, name: str, resize: bool) -> np.ndarray:
    """Bytes -> ``3 x 64 x 64`` uint8. Without ``resize`` anything but 64x64 RGB is an error."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if not resize and (img.size != (SIZE, SIZE) or img.mode != "RGB"):
                raise ClearfaceError(
                    f"{name}: image is {img.size[0]}x{img.size[1]} {img.mode}, expected {SIZE}x{SIZE} RGB "
                    "(pass --resize to convert any size and mode)")
            img.load()
            arr = to_rgb64(img)
    except ClearfaceError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ClearfaceError(f"{name}: corrupt or truncated image ({exc})") from None
    return arr


def to_rgb64(img: Image.Image) -> np.ndarray:
    """Any PIL image -> 64x64 RGB, CHW uint8. The one conversion used by --resize and the service."""
    if img.mode != "RGB":
        if img.mode in ("RGBA", "LA", "P") or "transparency" in img.info:
            img = img.convert("RGBA")
            bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(bg, img)
        img = img.convert("RGB")
    if img.size != (SIZE, SIZE):
        img = img.resize((SIZE, SIZE), Image.BILINEAR, reducing_gap=2.0)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def _pixel_hash(arr: np.ndarray) -> int:
    return int.from_bytes(hashlib.blake2b(arr.tobytes(), digest_size=8).digest(), "little")


def _decode_range(path: str, names: list[str], resize: bool, out_path: str | None, offset: int):
    """Worker: decode ``names`` into ``out_path[offset:]`` (or return them); return hashes."""
    p = Path(path)
    out = np.load(out_path, mmap_mode="r+") if out_path else np.empty((len(names), 3, SIZE, SIZE), np.uint8)
    base = 0 if out_path is None else offset
    hashes = np.empty(len(names), np.uint64)
    zf = zipfile.ZipFile(p) if not p.is_dir() else None
    try:
        for i, name in enumerate(names):
            shown = f"{p}:{name}" if zf else str(p / name)
            try:
                data = zf.read(name) if zf else (p / name).read_bytes()
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise ClearfaceError(f"{shown}: unreadable entry ({exc})") from None
            arr = decode_image(data, shown, resize)
            out[base + i] = arr
            hashes[i] = _pixel_hash(arr)
    finally:
        if zf:
            zf.close()
    if out_path:
        out.flush()
        return hashes, None
    return hashes, out


def _workers(n: int, workers: int | None) -> int:
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)), 8)
    return max(1, min(workers, n // 2000 or 1))


def decode_all(path, names: list[str], resize: bool = False, out_path: str | None = None,
               workers: int | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """Decode every image, in parallel processes when there are enough of them."""
    n_workers = _workers(len(names), workers)
    chunks = np.array_split(np.arange(len(names)), n_workers)
    if n_workers == 1:
        hashes, arr = _decode_range(str(path), names, resize, out_path, 0)
        return arr, hashes
    # Workers pay for their own imports; fork keeps that cheap on Linux.
    import multiprocessing as mp
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
        futs = [pool.submit(_decode_range, str(path), [names[i] for i in c], resize, out_path, int(c[0]) if len(c) else 0)
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


def _source_fingerprint(p: Path) -> dict:
    st = p.stat()
    if p.is_dir():
        # A folder's own mtime changes when files are added or removed; sizes catch edits.
        files = sorted(f for f in p.rglob("*") if f.is_file())
        h = hashlib.sha256()
        for f in files:
            fs = f.stat()
            h.update(f"{f.relative_to(p)}:{fs.st_size}:{fs.st_mtime_ns}\n".encode())
        return {"size": sum(f.stat().st_size for f in files), "mtime_ns": st.st_mtime_ns, "listing_sha256": h.hexdigest()}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def load_images(path, resize: bool = False, cache_dir: str | os.PathLike | None = None,
                use_cache: bool = True, workers: int | None = None, limit: int | None = None) -> ImageSet:
    """Images of a zip/folder as an :class:`ImageSet`, from the cache when the source is unchanged.

    ``limit`` decodes only the first N images (smoke runs, tests) without touching the rest.
    """
    p = Path(path).expanduser()
    names = list_images(p)
    if limit:
        names = names[:int(limit)]
    if not use_cache:
        arr, hashes = decode_all(p, names, resize, None, workers)
        return ImageSet(arr, names, hashes, str(p))

    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClearfaceError(f"{cache}: cannot create cache folder ({exc})") from None
    key = hashlib.sha1(f"{p.resolve()}|resize={resize}|limit={limit}|v{CACHE_FORMAT}".encode()).hexdigest()[:16]
    stem = f"{p.stem}-{key}"
    meta_path, img_path, hash_path = cache / f"{stem}.json", cache / f"{stem}.images.npy", cache / f"{stem}.hashes.npy"
    fingerprint = _source_fingerprint(p)
    if meta_path.exists() and img_path.exists() and hash_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("source") == fingerprint and meta.get("names") == names:
            images = np.load(img_path, mmap_mode="r")
            if images.shape == (len(names), 3, SIZE, SIZE):
                return ImageSet(images, names, np.load(hash_path), str(p))

    tmp_img = img_path.with_name(img_path.name + f".tmp{os.getpid()}.npy")
    try:
        np.lib.format.open_memmap(tmp_img, mode="w+", dtype=np.uint8, shape=(len(names), 3, SIZE, SIZE)).flush()
        _, hashes = decode_all(p, names, resize, str(tmp_img), workers)
        tmp_hash = hash_path.with_name(hash_path.name + f".tmp{os.getpid()}.npy")
        np.save(tmp_hash, hashes)
        meta = {"format": CACHE_FORMAT, "path": str(p.resolve()), "source": fingerprint,
                "sha256": None if p.is_dir() else _sha256(p), "count": len(names),
                "shape": [len(names), 3, SIZE, SIZE], "dtype": "uint8", "resize": resize, "names": names}
        os.replace(tmp_img, img_path)
        os.replace(tmp_hash, hash_path)
        write_text_atomic(meta_path, json.dumps(meta))
    finally:
        for t in (tmp_img,):
            if t.exists():
                t.unlink()
    return ImageSet(np.load(img_path, mmap_mode="r"), names, hashes, str(p))


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


# ---------------------------------------------------------------------------- output

def write_text_atomic(path, text: str) -> None:
    """Write to a temporary name beside ``path`` and rename, so a crash leaves no half file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
