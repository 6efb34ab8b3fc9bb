"""The decoded-image cache: one ``N x 3 x 64 x 64`` uint8 ``.npy`` per source, keyed by content.

Files per source (``<stem>-<key>``): ``.images.npy`` (memory-mapped on reuse), ``.hashes.npy`` (pixel
hashes) and ``.json`` (what the source was). The JSON is written last and removed first, so a set
without it is never used; a killed build leaves only ``*.tmp<PID>*`` files, swept on the next start
once that PID is gone.

When is a cached set reused? The JSON records the source's size, mtime, a sample hash and its full
sha256:

- same size and mtime (the fast path): the sample hash is recomputed and must match. It covers
  the size, the first, middle and last MiB, and for a zip its raw central directory (name, CRC-32
  and sizes of every member), so a zip replaced by another of the same size and mtime is caught
  unless the two differ only in member bytes whose CRC-32 also matches (a deliberate collision);
- other size or mtime, same path: the full sha256 decides; a match (a copy, a ``touch``) refreshes
  the record so the next run takes the fast path again;
- anything unreadable (cut JSON, truncated ``.npy``, wrong shape): the set is rebuilt.

Cost, measured on the 139 MB ``train_img.zip`` (80,000 members, 5.3 MB central directory), warm page
cache, shared 2-core machine: sample hash 0.02-0.05 s per run (fast path), full sha256 0.47 s (once
per build, and when size or mtime moved). Cold from disk the full hash is bound by read speed.
Folders keep the listing key (names, sizes, mtimes of every file): hashing 80,000 files each run
would cost more than the cache saves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ClearfaceError
from ..outputs import file_sha256, write_text_atomic
from .ingest import SIZE, ImageSet, decode_all, default_cache_dir

CACHE_FORMAT = 2
SAMPLE = 1 << 20
_TMP = re.compile(r"\.tmp(\d+)(\.(?:npy|onnx|png))?$")  # outputs.atomic_path names, with the suffixes it is given


def sample_hash(p: Path) -> str:
    """sha256 of the size, the first/middle/last MiB and (zips) the member directory of ``p``."""
    size = p.stat().st_size
    h = hashlib.sha256(f"size={size}\n".encode())
    with open(p, "rb") as f:
        for start in sorted({0, max(0, size // 2 - SAMPLE // 2), max(0, size - SAMPLE)}):
            f.seek(start)
            h.update(f.read(SAMPLE))
        directory = _zip_directory_span(f)
        if directory is not None:
            f.seek(directory[0])
            h.update(f.read(directory[1]))
    return h.hexdigest()


def _zip_directory_span(f) -> tuple[int, int] | None:
    """(offset, length) of a zip's central directory, read raw: parsing 80,000 entries costs seconds."""
    try:
        end = zipfile._EndRecData(f)  # handles zip64 and a trailing comment
    except (OSError, ValueError, struct.error):
        return None
    if not end:
        return None
    size = end[zipfile._ECD_SIZE]
    start = end[zipfile._ECD_LOCATION] - size
    if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
        start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
    return (start, size) if start >= 0 and size > 0 else None


def source_record(p: Path, full: str | None = None) -> dict:
    """What identifies the source: for a file size, mtime, sample hash and (given or computed) sha256."""
    st = p.stat()
    if p.is_dir():
        # A folder's own mtime changes when files are added or removed; sizes and mtimes catch edits.
        files = sorted(f for f in p.rglob("*") if f.is_file())
        h = hashlib.sha256()
        for f in files:
            fs = f.stat()
            h.update(f"{f.relative_to(p)}:{fs.st_size}:{fs.st_mtime_ns}\n".encode())
        return {"size": sum(f.stat().st_size for f in files), "mtime_ns": st.st_mtime_ns,
                "listing_sha256": h.hexdigest()}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sample_sha256": sample_hash(p),
            "sha256": full or file_sha256(p)}


def _same_source(p: Path, saved: dict) -> tuple[bool, dict | None, str | None]:
    """Is ``p`` still what ``saved`` describes? Also returns a refreshed record when only mtime moved,
    and the full sha256 when it had to be computed (a rebuild's record reuses it: 0.5 s per pass)."""
    if not isinstance(saved, dict):
        return False, None, None
    st = p.stat()
    if p.is_dir():
        return source_record(p) == saved, None, None
    if saved.get("size") == st.st_size and saved.get("mtime_ns") == st.st_mtime_ns:
        return saved.get("sample_sha256") == sample_hash(p), None, None
    if not saved.get("sha256"):
        return False, None, None
    full = file_sha256(p)
    if saved["sha256"] == full:
        return True, source_record(p, full=full), full
    return False, None, full


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_temp(folder: Path, hidden_only: bool = False) -> list[Path]:
    """Remove ``*.tmp<PID>[.npy]`` files whose writing process is gone; returns what was removed.

    ``hidden_only``: only ``.name.tmp<PID>`` (the atomic writers' names), for folders users share.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for f in entries:
        m = _TMP.search(f.name)
        if (m and (f.name.startswith(".") or not hidden_only) and f.is_file()
                and not _pid_alive(int(m.group(1)))):
            try:
                f.unlink()
                removed.append(f)
            except OSError:
                pass
    return removed


def _read_cached(meta_path: Path, img_path: Path, hash_path: Path, p: Path, names: list[str]):
    """``(cached set, None)`` if it is complete, readable and still describes ``p``; else ``(None, the
    source's full sha256 if it was computed on the way)``."""
    if not (meta_path.exists() and img_path.exists() and hash_path.exists()):
        return None, None
    full = None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != CACHE_FORMAT or meta.get("names") != names:
            return None, None
        same, refreshed, full = _same_source(p, meta.get("source"))
        if not same:
            return None, full
        images = np.load(img_path, mmap_mode="r")
        hashes = np.load(hash_path)
    except (OSError, ValueError, EOFError, TypeError, AttributeError):  # cut, damaged or foreign files
        return None, full
    if images.shape != (len(names), 3, SIZE, SIZE) or images.dtype != np.uint8 or hashes.shape != (len(names),):
        return None, full
    if refreshed is not None:
        meta["source"] = refreshed
        try:
            write_text_atomic(meta_path, json.dumps(meta))
        except OSError:
            pass
    return ImageSet(images, names, hashes, str(p)), None


def load_cached(p: Path, names: list[str], resize: bool, limit, cache_dir, workers) -> ImageSet:
    """Images of ``p`` from the cache when it still holds this content, else decoded into it."""
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClearfaceError(f"{cache}: cannot create cache folder ({exc})") from None
    sweep_stale_temp(cache)
    key = hashlib.sha1(f"{p.resolve()}|resize={resize}|limit={limit}|v{CACHE_FORMAT}".encode()).hexdigest()[:16]
    stem = f"{p.stem}-{key}"
    meta_path, img_path, hash_path = cache / f"{stem}.json", cache / f"{stem}.images.npy", cache / f"{stem}.hashes.npy"
    cached, full = _read_cached(meta_path, img_path, hash_path, p, names)
    if cached is not None:
        return cached

    record = source_record(p, full)  # before decoding: a source changed meanwhile is caught next time
    pid = os.getpid()
    tmp_img = img_path.with_name(f"{img_path.name}.tmp{pid}.npy")
    tmp_hash = hash_path.with_name(f"{hash_path.name}.tmp{pid}.npy")
    try:
        np.lib.format.open_memmap(tmp_img, mode="w+", dtype=np.uint8, shape=(len(names), 3, SIZE, SIZE)).flush()
        _, hashes = decode_all(p, names, resize, str(tmp_img), workers)
        np.save(tmp_hash, hashes)
        meta = {"format": CACHE_FORMAT, "path": str(p.resolve()), "source": record, "sha256": record.get("sha256"),
                "count": len(names),
                "shape": [len(names), 3, SIZE, SIZE], "dtype": "uint8", "resize": resize, "names": names}
        meta_path.unlink(missing_ok=True)  # no record while the arrays change
        os.replace(tmp_img, img_path)
        os.replace(tmp_hash, hash_path)
        write_text_atomic(meta_path, json.dumps(meta))
    finally:
        for t in (tmp_img, tmp_hash):
            t.unlink(missing_ok=True)
    return ImageSet(np.load(img_path, mmap_mode="r"), names, hashes, str(p))
