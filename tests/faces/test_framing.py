"""Framing: cutting a face with the stored geometry is the inverse of how training crops frame it."""

import numpy as np
import pytest
from PIL import Image

from clearface.errors import ClearfaceError
from clearface.faces import cut_face, default_framing
from clearface.faces.framing import check_framing
from conftest import real_slice


def _place(framing, x, y, side, angle_deg=0.0):
    """The template's landmarks and box as they sit on a crop pasted at (x, y) with ``side``,
    rotated by ``angle_deg`` about the crop centre."""
    t = np.radians(angle_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    c = np.array([x + side / 2, y + side / 2])
    lm = (np.asarray(framing["landmarks"]) * side + [x, y] - c) @ rot.T + c
    b = np.asarray(framing["box"]) * side + [x, y, x, y]
    return b, lm


def _canvas(crop: Image.Image, x, y, side, angle_deg=0.0, size=(500, 400)):
    canvas = Image.new("RGB", size, (40, 90, 160))
    big = crop.resize((side, side), Image.BICUBIC)
    if angle_deg:  # PIL rotates counter-clockwise on screen for positive angles: use -angle for our image-y-down rotation
        layer = Image.new("RGBA", size, (0, 0, 0, 0))
        layer.paste(big, (x, y))
        layer = layer.rotate(-angle_deg, resample=Image.BICUBIC, center=(x + side / 2, y + side / 2))
        canvas.paste(layer, (0, 0), layer)
    else:
        canvas.paste(big, (x, y))
    return canvas


@pytest.fixture(scope="module")
def crops():
    blobs, _ = real_slice(4)
    import io
    return [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs]


@pytest.mark.parametrize("anchor", ["eyes", "landmarks", "box"])
@pytest.mark.parametrize("side", [64, 180, 700])
def test_cut_reproduces_the_pasted_crop(crops, anchor, side):
    framing = dict(default_framing(), anchor=anchor)
    for crop in crops:
        x, y = 37, 21
        canvas = _canvas(crop, x, y, side, size=(max(500, side + 80), max(400, side + 60)))
        box, lm = _place(framing, x, y, side)
        cut = cut_face(canvas, box, lm, framing)
        assert cut.shape == (3, 64, 64) and cut.dtype == np.uint8
        diff = np.abs(cut.astype(int) - np.asarray(crop).transpose(2, 0, 1)).mean()
        assert diff < 8, (anchor, side, diff)


def test_level_eyes_undoes_a_roll(crops):
    framing = dict(default_framing(), anchor="landmarks", level_eyes=True)
    crop = crops[0]
    canvas = _canvas(crop, 120, 80, 200, angle_deg=25)
    box, lm = _place(framing, 120, 80, 200, angle_deg=25)
    ref = np.asarray(crop).transpose(2, 0, 1).astype(int)
    level = np.abs(cut_face(canvas, box, lm, framing).astype(int) - ref)[:, 12:52, 12:52].mean()
    kept = np.abs(cut_face(canvas, box, lm, dict(framing, level_eyes=False)).astype(int) - ref)[:, 12:52, 12:52].mean()
    assert level < 10 and kept > 2 * level, (level, kept)


def test_face_at_the_photo_edge_is_padded_not_shifted(crops):
    framing = default_framing()
    crop = crops[1]
    canvas = _canvas(crop, 0, 0, 200)
    box, lm = _place(framing, -40, -30, 200)  # the square reaches outside the photo
    cut = cut_face(canvas, box, lm, framing)
    assert cut.shape == (3, 64, 64)


@pytest.mark.parametrize("bad", [{}, {"anchor": "nose", "landmarks": [[0, 0]] * 5, "box": [0, 0, 1, 1]},
                                 {"anchor": "eyes", "landmarks": [[0, 0]] * 4, "box": [0, 0, 1, 1]},
                                 {"anchor": "box", "landmarks": [[0, 0]] * 5, "box": [0.5, 0, 0.2, 1]},
                                 {"anchor": "eyes", "landmarks": [[float("nan"), 0]] * 5, "box": [0, 0, 1, 1]}])
def test_invalid_framing_is_a_clear_error(bad):
    with pytest.raises(ClearfaceError, match="invalid face framing"):
        check_framing(bad, "model.pt: preprocess.framing")


def test_packaged_framing_is_valid_and_measured():
    f = check_framing(default_framing())
    assert "measured_on" in f and f["detection_rate"]["all"] > 0.9
    assert f["anchor"] in ("eyes", "landmarks", "box")
    lm = np.asarray(f["landmarks"])
    assert lm[0, 0] < 0.5 < lm[1, 0]  # left eye left of centre, right eye right
    assert 0 < lm[0, 1] < lm[3, 1] < 1  # eyes above the mouth
