import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearface.data import list_images, load_images, load_labelled, read_labels
from clearface.errors import ClearfaceError
from conftest import jpeg_bytes, real_slice, write_labels, write_zip


def _rgb(seed=0, size=64):
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)


def test_real_slice_decodes_in_numeric_order(real_small, cache_dir):
    zpath, lpath, labels = real_small
    s, y = load_labelled(zpath, lpath, cache_dir=cache_dir)
    assert s.images.shape == (300, 3, 64, 64) and s.images.dtype == np.uint8
    assert s.names[0] == "train_img/000001.jpg" and s.names[-1] == "train_img/000300.jpg"
    assert (y == labels).all()
    from PIL import Image
    import io
    with zipfile.ZipFile(zpath) as zf:
        ref = np.asarray(Image.open(io.BytesIO(zf.read("train_img/000007.jpg")))).transpose(2, 0, 1)
    assert (s.images[6] == ref).all()


def test_cache_is_written_and_reused(real_small, cache_dir):
    zpath, _, _ = real_small
    a = load_images(zpath, cache_dir=cache_dir)
    metas = list(cache_dir.glob("*.json"))
    assert len(metas) == 1
    meta = json.loads(metas[0].read_text())
    assert meta["count"] == 300 and meta["shape"] == [300, 3, 64, 64] and len(meta["sha256"]) == 64
    assert meta["source"]["size"] == zpath.stat().st_size
    stamp = metas[0].stat().st_mtime_ns
    b = load_images(zpath, cache_dir=cache_dir)
    assert metas[0].stat().st_mtime_ns == stamp  # not rebuilt
    assert isinstance(b.images, np.memmap) and (a.images == b.images).all()


def test_cache_rebuilt_when_source_changes(tmp_path, cache_dir):
    blobs = [jpeg_bytes(_rgb(i)) for i in range(3)]
    z = write_zip(tmp_path / "a.zip", blobs)
    first = load_images(z, cache_dir=cache_dir).images.copy()
    write_zip(z, [jpeg_bytes(_rgb(i + 10)) for i in range(3)])
    second = load_images(z, cache_dir=cache_dir).images
    assert not (first == second).all()


def test_folder_input(tmp_path, cache_dir):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(1, 4):
        (d / f"{i}.jpg").write_bytes(jpeg_bytes(_rgb(i)))
    s = load_images(d, cache_dir=cache_dir)
    assert s.names == ["1.jpg", "2.jpg", "3.jpg"]
    assert s.images.shape == (3, 3, 64, 64)


def test_numeric_not_lexicographic_order(tmp_path):
    z = write_zip(tmp_path / "a.zip", [jpeg_bytes(_rgb(i)) for i in range(3)], names=["x/10.jpg", "x/9.jpg", "x/11.jpg"])
    assert list_images(z) == ["x/9.jpg", "x/10.jpg", "x/11.jpg"]


def test_duplicate_pixels_share_a_hash(tmp_path):
    b = jpeg_bytes(_rgb(1))
    z = write_zip(tmp_path / "a.zip", [b, jpeg_bytes(_rgb(2)), b])
    h = load_images(z, use_cache=False).hashes
    assert h[0] == h[2] != h[1]


@pytest.mark.parametrize("case,message", [
    ("missing", "no such file"),
    ("not_zip", "not a zip"),
    ("empty", "contains no images"),
    ("non_numeric", "is not a number"),
    ("gap", "jump from"),
    ("dup_number", "same number"),
    ("unsafe", "unsafe entry"),
    ("corrupt", "corrupt or truncated"),
    ("truncated", "corrupt or truncated"),
    ("wrong_size", "expected 64x64 RGB"),
    ("grey", "expected 64x64 RGB"),
    ("not_image_suffix", "not an image file"),
])
def test_bad_image_sources(tmp_path, case, message):
    good = jpeg_bytes(_rgb(0))
    p = tmp_path / "data.zip"
    if case == "missing":
        p = tmp_path / "nope.zip"
    elif case == "not_zip":
        p.write_text("hello")
    elif case == "empty":
        write_zip(p, [])
    elif case == "non_numeric":
        write_zip(p, [good, good], names=["d/1.jpg", "d/abc.jpg"])
    elif case == "gap":
        write_zip(p, [good, good], names=["d/1.jpg", "d/3.jpg"])
    elif case == "dup_number":
        write_zip(p, [good, good], names=["d/1.jpg", "d/01.jpg"])
    elif case == "unsafe":
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("../1.jpg", good)
    elif case == "corrupt":
        write_zip(p, [good, b"not a jpeg at all"])
    elif case == "truncated":
        write_zip(p, [good, good[: len(good) // 2]])
    elif case == "wrong_size":
        write_zip(p, [good, jpeg_bytes(_rgb(1, size=80))])
    elif case == "grey":
        write_zip(p, [good, jpeg_bytes(_rgb(1)[:, :, 0])])
    elif case == "not_image_suffix":
        write_zip(p, [good, b"x"], names=["d/1.jpg", "d/2.txt"])
    with pytest.raises(ClearfaceError, match=message) as err:
        load_images(p, use_cache=False, workers=1)
    if case in ("corrupt", "truncated", "wrong_size", "grey"):
        assert "000002.jpg" in str(err.value)  # names the entry


def test_resize_converts_any_size_and_mode(tmp_path):
    blobs = [jpeg_bytes(_rgb(0, size=100)), jpeg_bytes(_rgb(1)[:, :, 0]), jpeg_bytes(_rgb(2, size=30), "PNG")]
    z = write_zip(tmp_path / "a.zip", blobs)
    s = load_images(z, resize=True, use_cache=False)
    assert s.images.shape == (3, 3, 64, 64)


def test_labels_errors(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("1\n0\n2\n")
    with pytest.raises(ClearfaceError, match=r"l.txt:3: label '2' is not 0 or 1"):
        read_labels(p)
    write_labels(p, [1, 0, 1])
    with pytest.raises(ClearfaceError, match="3 labels but 4 images"):
        read_labels(p, expected=4)
    with pytest.raises(ClearfaceError, match="no such label file"):
        read_labels(tmp_path / "missing.txt")
    p.write_text("1\n0\n\n")  # a trailing blank line is fine
    assert read_labels(p).tolist() == [1, 0]


def test_parallel_decode_matches_serial(tmp_path):
    blobs, _ = real_slice(4100)
    z = write_zip(tmp_path / "a.zip", blobs)
    a = load_images(z, use_cache=False, workers=1)
    b = load_images(z, use_cache=False, workers=2)
    assert (a.images == b.images).all() and (a.hashes == b.hashes).all()


_segment = st.text(alphabet="abc019_-.", min_size=1, max_size=8).filter(lambda t: t not in (".", ".."))


@given(st.lists(_segment, min_size=1, max_size=4), st.booleans())
@settings(max_examples=300, deadline=None)
def test_entry_names_split_as_pathlib_does(segments, trailing_slash):
    """The str-based name splitting (fast on 80k entries) agrees with PurePosixPath on entry names."""
    from pathlib import PurePosixPath

    from clearface.data.ingest import _is_skippable, _stem_suffix
    name = "/".join(segments) + ("/" if trailing_slash else "")
    p = PurePosixPath(name)
    assert _stem_suffix(name) == (p.stem, p.suffix)
    assert _is_skippable(name) == (name.endswith("/") or p.name.startswith(".") or "__MACOSX" in p.parts)


def _pil_decode(data: bytes) -> np.ndarray:
    """The PIL-only decode that the simplejpeg fast path must equal, pixel for pixel."""
    from PIL import Image

    from clearface.data.ingest import to_rgb64
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return to_rgb64(img)


def _jpeg(arr: np.ndarray, mode: str | None = None, **save) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    img = Image.fromarray(arr)
    (img.convert(mode) if mode else img).save(buf, format="JPEG", **save)
    return buf.getvalue()


def test_colour_jpeg_crops_decode_to_pils_pixels():
    """64x64 colour JPEGs skip PIL (a third of the cost) and must give PIL's pixels exactly: real
    crops, every chroma subsampling, low and high quality, progressive, and RGB-coded JPEGs."""
    from clearface.data.ingest import _colour_jpeg64, decode_image
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    noisy = rng.integers(0, 256, (64, 64, 3), np.uint8)
    blobs = [_jpeg(a, subsampling=sub, quality=q) for a in (smooth, noisy) for sub in (0, 1, 2) for q in (30, 95)]
    blobs += [_jpeg(noisy, progressive=True), _jpeg(smooth, keep_rgb=True)]
    try:
        blobs += real_slice(200, start=1000)[0]
    except pytest.skip.Exception:
        pass  # the generated ones still run without ../shared/data
    for i, b in enumerate(blobs):
        assert _colour_jpeg64(b) is not None, i  # the fast path was taken, not PIL's
        np.testing.assert_array_equal(decode_image(b, f"{i}.jpg"), _pil_decode(b), err_msg=str(i))


def test_other_images_go_to_pil():
    """Anything but a clean 64x64 colour JPEG is PIL's to decode or to refuse, with its message."""
    from clearface.data.ingest import _colour_jpeg64
    rgb = _rgb(3)
    good = _jpeg(rgb)
    others = [jpeg_bytes(rgb, "PNG"), _jpeg(rgb[:, :, 0]), _jpeg(rgb, "CMYK"), _jpeg(_rgb(3, size=80)),
              good[: len(good) // 2], good[:2], b"\xff\xd8 not a jpeg"]
    for i, other in enumerate(others):
        assert _colour_jpeg64(other) is None, i
