"""open_photo: every mode to RGB, EXIF orientation, the pixel limit checked before decoding, clear errors."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from clearface.errors import ClearfaceError
from clearface.faces import open_photo


def _bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _rgb(h=30, w=40):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_rgb_passes_through_unchanged():
    arr = _rgb()
    img = open_photo(_bytes(Image.fromarray(arr)), "a.png", 10_000)
    assert img.mode == "RGB" and (np.asarray(img) == arr).all()


def test_grey_and_palette_become_rgb():
    grey = Image.fromarray(np.full((10, 12), 77, np.uint8), "L")
    out = np.asarray(open_photo(_bytes(grey), "g.png", 10_000))
    assert out.shape == (10, 12, 3) and (out == 77).all()
    pal = Image.fromarray(_rgb()).convert("P")
    out = open_photo(_bytes(pal), "p.png", 10_000)
    assert out.mode == "RGB" and out.size == (40, 30)


def test_alpha_is_composed_on_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255          # red ...
    rgba[:, :4, 3] = 255        # ... opaque on the left half, fully transparent on the right
    out = np.asarray(open_photo(_bytes(Image.fromarray(rgba, "RGBA")), "a.png", 10_000))
    assert (out[:, :4] == [255, 0, 0]).all() and (out[:, 4:] == 255).all()


def test_sixteen_bit_grey_is_scaled_not_clipped():
    arr = np.full((6, 6), 65535, np.uint16)
    arr[:, :3] = 32896  # mid-grey in 16 bits
    img = Image.fromarray(arr)  # mode I;16
    out = np.asarray(open_photo(_bytes(img), "deep.png", 10_000))
    assert out.shape == (6, 6, 3)
    assert (out[:, 3:] == 255).all() and (np.abs(out[:, :3].astype(int) - 128) <= 1).all()
    as_i = Image.fromarray(arr.astype(np.int32), "I")
    out = np.asarray(open_photo(_bytes(as_i, "TIFF"), "deep32.tif", 10_000))
    assert (out[:, 3:] == 255).all() and (np.abs(out[:, :3].astype(int) - 128) <= 1).all()


def test_cmyk_jpeg_becomes_rgb():
    img = Image.fromarray(_rgb()).convert("CMYK")
    out = open_photo(_bytes(img, "JPEG"), "c.jpg", 10_000)
    assert out.mode == "RGB" and out.size == (40, 30)


def test_exif_orientation_is_applied():
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # white left half of a landscape image
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    out = np.asarray(open_photo(_bytes(img, "JPEG", exif=exif.tobytes(), quality=95), "r.jpg", 10_000))
    assert out.shape == (40, 20, 3)  # portrait now
    assert out[:18].mean() > 200 and out[22:].mean() < 50  # the white half is on top


def test_pixel_limit_is_checked_before_decoding():
    data = _bytes(Image.new("RGB", (300, 200)))
    with pytest.raises(ClearfaceError) as e:
        open_photo(data, "big.png", 300 * 200 - 1)
    assert e.value.status == 413 and "big.png" in str(e.value) and "300x200" in str(e.value)
    assert open_photo(data, "big.png", 300 * 200).size == (300, 200)


def test_pixel_limit_needs_no_pixel_data():
    # a 1x1 PNG whose header claims 30000 x 30000: refused on size, never decoded
    data = bytearray(_bytes(Image.new("L", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", 30000, 30000)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR CRC
    data = bytes(data)
    with pytest.raises(ClearfaceError) as e:
        open_photo(data, "bomb.png", 10_000_000)
    assert e.value.status == 413


@pytest.mark.parametrize("data", [b"", b"not an image at all", None])
def test_corrupt_and_truncated_name_the_file(data):
    if data is None:
        data = _bytes(Image.fromarray(_rgb(200, 200)), "JPEG")[:400]
    with pytest.raises(ClearfaceError) as e:
        open_photo(data, "photos/7.jpg", 10_000_000)
    assert e.value.status == 422 and "photos/7.jpg" in str(e.value)
