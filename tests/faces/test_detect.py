"""The detector on real faces (matplotlib's portrait, pasted training crops) and photos through predict."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from clearface.cli import main
from clearface.errors import ClearfaceError
from conftest import real_slice


def _portrait_bytes() -> bytes:
    from matplotlib import cbook
    with open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb") as f:
        return f.read()


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _pasted(crop_bytes: bytes, at=(150, 80), side=220, size=(500, 400), colour=(70, 120, 90)) -> bytes:
    canvas = Image.new("RGB", size, colour)
    canvas.paste(Image.open(io.BytesIO(crop_bytes)).convert("RGB").resize((side, side), Image.BICUBIC), at)
    return _jpeg(canvas)


def _no_face() -> bytes:
    return _jpeg(Image.fromarray(np.tile(np.linspace(0, 255, 500, dtype=np.uint8), (400, 1))))


def test_portrait_has_one_face_at_the_right_place_and_is_occluded():
    from clearface.engines import load_engine
    from clearface.faces import find_faces, open_photo
    img = open_photo(_portrait_bytes(), "grace_hopper.jpg", 10_000_000)
    faces = find_faces(img)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    # the face (not the cap): centre about (262, 219) in the 512x600 portrait, about 180 px wide
    assert abs((x0 + x1) / 2 - 262) < 25 and abs((y0 + y1) / 2 - 219) < 30 and 140 < x1 - x0 < 230
    assert faces[0].confidence > 0.95 and faces[0].crop.shape == (3, 64, 64) and faces[0].landmarks.shape == (5, 2)
    eng = load_engine("default", "torch")
    assert eng.score(faces[0].crop[None])[0] < eng.info["threshold"]  # cap and glasses: class 0


def test_pasted_crop_is_found_where_it_was_put():
    from clearface.faces import find_faces, open_photo
    blobs, _ = real_slice(1)
    faces = find_faces(open_photo(_pasted(blobs[0], at=(150, 80), side=220), "p.jpg", 10_000_000))
    assert len(faces) == 1
    cx, cy = (faces[0].box[0] + faces[0].box[2]) / 2, (faces[0].box[1] + faces[0].box[3]) / 2
    assert 150 < cx < 370 and 80 < cy < 300


def test_no_face_and_too_small_face_give_no_faces():
    from clearface.faces import MIN_FACE_PX, find_faces, open_photo
    assert find_faces(open_photo(_no_face(), "flat.jpg", 10_000_000)) == []
    blobs, _ = real_slice(1)
    tiny = _pasted(blobs[0], at=(200, 150), side=int(MIN_FACE_PX * 1.2))  # box ~ 0.5 x crop side: below the minimum
    assert find_faces(open_photo(tiny, "tiny.jpg", 10_000_000)) == []


def test_missing_detector_names_the_install_command(monkeypatch):
    import sys

    from clearface.faces import detector
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    detector.load_detector.cache_clear()
    try:
        with pytest.raises(ClearfaceError, match="pip install --no-deps facenet-pytorch==2.6.0"):
            detector.load_detector()
    finally:
        detector.load_detector.cache_clear()


@pytest.fixture(scope="module")
def photos_zip(tmp_path_factory):
    """1: the portrait (class 0), 2: a clean training crop pasted into a scene, 3: no face."""
    blobs, labels = real_slice(3)
    clean = int(np.flatnonzero(labels == 1)[0])
    d = tmp_path_factory.mktemp("photos")
    z = d / "photos.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for k, b in enumerate([_portrait_bytes(), _pasted(blobs[clean]), _no_face()], start=1):
            zf.writestr(f"photos/{k}.jpg", b)
    (d / "labels.txt").write_text("0\n1\n1\n")
    return z, d / "labels.txt"


def test_predict_detect_writes_one_line_per_photo_and_a_row_per_face(photos_zip, tmp_path):
    z, _ = photos_zip
    out, faces = tmp_path / "labels.txt", tmp_path / "faces.csv"
    assert main(["predict", "--preprocess", "detect", "--data", str(z), "--out", str(out), "--faces", str(faces),
                 "--engine", "torch"]) == 0
    labels = out.read_text().splitlines()
    assert labels[0] == "0" and labels[2] == "0" and len(labels) == 3  # portrait occluded; no face -> 0
    rows = [r.split(",") for r in faces.read_text().splitlines()]
    assert rows[0] == ["image", "face", "x0", "y0", "x1", "y1", "confidence", "score", "label"]
    by_image = {}
    for r in rows[1:]:
        by_image.setdefault(r[0], []).append(r)
    assert list(by_image) == ["photos/1.jpg", "photos/2.jpg", "photos/3.jpg"]
    assert [r[1] for r in by_image["photos/1.jpg"]] == ["0"] and by_image["photos/1.jpg"][0][8] == "0"
    assert by_image["photos/2.jpg"][0][8] == labels[1]  # the largest face decides the photo's line
    assert by_image["photos/3.jpg"] == [["photos/3.jpg", "no_face", "", "", "", "", "", "0.000000", "0"]]


def test_evaluate_detect_scores_each_photo(photos_zip, capsys):
    z, lab = photos_zip
    assert main(["evaluate", "--preprocess", "detect", "--data", str(z), "--labels", str(lab), "--engine", "torch",
                 "--json"]) == 0
    import json
    out = capsys.readouterr().out
    r = json.loads(out[out.index("{"):])
    assert r["n"] == 3 and r["preprocess"] == "detect" and r["no_face"] == 1


def test_corrupt_photo_is_one_error_naming_it(photos_zip, tmp_path, capsys):
    z = tmp_path / "bad.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("p/1.jpg", _no_face())
        zf.writestr("p/2.jpg", _no_face()[:300])
    out = tmp_path / "o.txt"
    assert main(["predict", "--preprocess", "detect", "--data", str(z), "--out", str(out), "--engine", "torch"]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("clearface: error:")]
    assert len(err) == 1 and "p/2.jpg" in err[0] and not out.exists()


def test_faces_needs_detect(photos_zip, tmp_path, capsys):
    z, _ = photos_zip
    assert main(["predict", "--preprocess", "resize", "--data", str(z), "--out", str(tmp_path / "o.txt"),
                 "--faces", str(tmp_path / "f.csv"), "--engine", "torch"]) == 2
    assert "--faces" in capsys.readouterr().err
