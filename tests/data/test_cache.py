"""The decoded-image cache is keyed by content and survives damage and killed builds."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from clearface.data import load_images
from clearface.data.cache import sample_hash, sweep_stale_temp

from conftest import write_zip


def _bmp(seed: int) -> bytes:
    """A 64x64 BMP: always the same byte length, whatever the pixels."""
    import io

    from PIL import Image
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="BMP")
    return buf.getvalue()


def _zip_of(path, seeds):
    return write_zip(path, [_bmp(s) for s in seeds])


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("n_images", [4, 400])  # 4: the samples cover the file; 400 (5 MB): they do not
def test_same_size_and_mtime_replacement_is_not_served_stale(tmp_path, cache_dir, n_images):
    z = tmp_path / "faces.zip"
    _zip_of(z, range(n_images))
    first = load_images(z, cache_dir=cache_dir).images.copy()
    st = z.stat()
    other = tmp_path / "other.zip"
    # Same member names and sizes; one image a quarter in differs: for 400 images (at 1.2 MB of 4.9 MB)
    # that is outside the first, middle and last MiB, so only the zip directory's CRC-32 tells.
    k = n_images // 4
    _zip_of(other, [*range(k), 10_000, *range(k + 1, n_images)])
    assert other.stat().st_size == st.st_size
    os.replace(other, z)
    os.utime(z, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (z.stat().st_size, z.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    second = load_images(z, cache_dir=cache_dir).images
    fresh = load_images(z, use_cache=False).images
    assert np.array_equal(second, fresh) and not np.array_equal(second, first)


def test_touched_source_is_reused_after_a_full_hash_check(tmp_path, cache_dir):
    z = _zip_of(tmp_path / "faces.zip", range(6))
    load_images(z, cache_dir=cache_dir)
    meta_path = next(cache_dir.glob("*.json"))
    built = meta_path.read_text()
    img_path = next(cache_dir.glob("*.images.npy"))
    before = img_path.stat().st_mtime_ns
    os.utime(z, ns=(time.time_ns(), time.time_ns() + 10**9))  # same bytes, new mtime
    s = load_images(z, cache_dir=cache_dir)
    assert img_path.stat().st_mtime_ns == before  # not decoded again
    meta = json.loads(meta_path.read_text())
    assert meta["source"]["mtime_ns"] == z.stat().st_mtime_ns and meta_path.read_text() != built
    assert meta["source"]["sample_sha256"] == sample_hash(z)
    assert np.array_equal(s.images, load_images(z, use_cache=False).images)


@pytest.mark.parametrize("damage", ["truncate images", "truncate hashes", "cut json", "garbage images"])
def test_damaged_cache_is_rebuilt(tmp_path, cache_dir, damage):
    z = _zip_of(tmp_path / "faces.zip", range(8))
    good = load_images(z, cache_dir=cache_dir).images.copy()
    target = {"truncate images": "*.images.npy", "truncate hashes": "*.hashes.npy",
              "cut json": "*.json", "garbage images": "*.images.npy"}[damage]
    f = next(cache_dir.glob(target))
    data = f.read_bytes()
    f.write_bytes(os.urandom(len(data)) if damage == "garbage images" else data[:len(data) // 2])
    again = load_images(z, cache_dir=cache_dir)
    assert np.array_equal(again.images, good)
    assert np.array_equal(load_images(z, cache_dir=cache_dir).images, good)  # and the rebuilt set is reused


def test_stale_temp_files_are_swept_and_live_ones_kept(tmp_path, cache_dir):
    cache_dir.mkdir()
    dead, alive = _dead_pid(), os.getppid()
    stale = [cache_dir / f"x-1.images.npy.tmp{dead}.npy", cache_dir / f".x-1.json.tmp{dead}"]
    live = [cache_dir / f"x-1.images.npy.tmp{alive}.npy"]
    for f in stale + live:
        f.write_bytes(b"partial")
    z = _zip_of(tmp_path / "faces.zip", range(3))
    load_images(z, cache_dir=cache_dir)
    assert not any(f.exists() for f in stale) and all(f.exists() for f in live)
    assert sweep_stale_temp(cache_dir) == []
    # every suffix outputs.atomic_path is given: a half ONNX export, an embeddings array, a sheet
    half = [cache_dir / f".m.onnx.tmp{dead}.onnx", cache_dir / f".e.npy.tmp{dead}.npy", cache_dir / f".s.png.tmp{dead}.png"]
    for f in half:
        f.write_bytes(b"partial")
    assert sorted(sweep_stale_temp(cache_dir, hidden_only=True)) == sorted(half)


def test_sample_hash_reads_the_zip_directory_beyond_the_sampled_mibs(tmp_path, monkeypatch):
    """A zip whose one changed member lies outside the first/middle/last MiB, in data and directory."""
    import zipfile

    from clearface.data import cache

    def build(path, changed: bool):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for i in range(40):  # 60 kB names: 2.4 MB of local headers, then 2.4 MB of directory
                data = bytes([i]) * 100
                if changed and i == 19:
                    data = bytes([255]) * 100
                zf.writestr(("d" * 60_000) + f"/{i:06d}.bmp", data)
        return path

    a, b = build(tmp_path / "a.zip", False), build(tmp_path / "b.zip", True)
    assert a.stat().st_size == b.stat().st_size
    assert cache.sample_hash(a) != cache.sample_hash(b)
    monkeypatch.setattr(cache, "_zip_directory_span", lambda f: None)
    assert cache.sample_hash(a) == cache.sample_hash(b)  # the MiB samples alone would miss it
