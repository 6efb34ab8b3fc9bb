"""The HTTP service through FastAPI's TestClient: faces and crops, the label rule, limits, headers, errors."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import re

import numpy as np
import pytest
from PIL import Image

from conftest import jpeg_bytes, real_slice

from clearface.faces.synthetic import png_header_only

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

needs_detector = pytest.mark.skipif(importlib.util.find_spec("facenet_pytorch") is None,
                                    reason="face detector (facenet-pytorch) not installed")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("serve_cache")


@pytest.fixture(scope="module")
def app(tiny_model_file, cache):
    from clearface.serve.app import create_app
    return create_app(tiny_model_file, engine="auto", cache_dir=cache)


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient
    with TestClient(app) as c:  # raise_server_exceptions=True: any 500 fails the test loudly
        yield c


@pytest.fixture(scope="module")
def small_client(tiny_model_file, cache):
    """Same model, tight limits: 3 files, 60 kB body, 10 000 pixels per image, 25 000 per request."""
    from fastapi.testclient import TestClient

    from clearface.serve.app import create_app
    app = create_app(tiny_model_file, engine="auto", cache_dir=cache, max_files=3, max_body_bytes=60_000,
                     max_pixels=10_000, max_request_pixels=25_000)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def real():
    return real_slice(8, start=1000)


def _rgb(blob: bytes) -> np.ndarray:
    """CHW uint8 of an image as PIL decodes it (the service decodes with PIL too)."""
    with Image.open(io.BytesIO(blob)) as img:
        return np.asarray(img.convert("RGB"), np.uint8).transpose(2, 0, 1)


def _from_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as img:
        return np.asarray(img.convert("RGB"), np.uint8).transpose(2, 0, 1)


def _torch_scores(model_file, arrays):
    from clearface.engines import load_engine
    return load_engine(model_file, engine="torch").score(np.stack(arrays))


def _files(*items):
    return [("file", (name, data, "application/octet-stream")) for name, data in items]


def _png(arr_hwc, mode=None) -> bytes:
    img = Image.fromarray(arr_hwc) if mode is None else Image.fromarray(arr_hwc).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _assert_error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


# ---------------------------------------------------------------------------- page, health, headers

def test_health(client):
    from clearface import __version__
    r = client.get("/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok"
    assert h["model"] == "tiny.pt" and h["members"] == ["cfnet_tiny"]
    assert h["version"] == __version__ and h["threshold"] == pytest.approx(0.5)
    assert h["engine"] == "onnx"
    assert h["limits"] == {"max_files": 64, "max_body_bytes": 10 * 1024 * 1024, "max_pixels": 4096 * 4096,
                           "max_request_pixels": 2 * 4096 * 4096, "max_busy": 4, "max_readers": 16}
    assert h["max_saliency_faces"] >= 1


def test_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "<script>" in html and "<style>" in html and 'type="file"' in html
    assert 'id="camera-start"' in html and "getUserMedia" in html and 'id="camera-stop"' in html
    low = html.lower()
    for external in ('src="http', "src='http", 'href="http', "href='http", "<link", "@import", "url(http", "//cdn"):
        assert external not in low, external


def test_security_headers_on_every_answer(client):
    page = client.get("/")
    answers = [page, client.get("/health"), client.get("/nope"), client.post("/predict"), client.get("/favicon.ico")]
    for r in answers:
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "http" not in csp and "*" not in csp and "unsafe" not in csp  # no external origin, no blanket inline
    # the CSP admits exactly the page's inline script and style, by hash
    csp = page.headers["content-security-policy"]
    for tag in ("script", "style"):
        bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", page.text, flags=re.S)
        assert bodies
        for body in bodies:
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in csp, tag
    assert "connect-src 'self'" in csp and "img-src 'self' data: blob:" in csp


def test_favicon_and_no_cdn_docs(client):
    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"] == "image/x-icon"
    with Image.open(io.BytesIO(r.content)) as icon:
        assert icon.format == "ICO" and icon.size[0] >= 16
    for path in ("/docs", "/redoc"):  # FastAPI's pages load Swagger/ReDoc from a CDN: turned off
        _assert_error(client.get(path), 404)
    schema = client.get("/openapi.json")
    assert schema.status_code == 200 and "/predict" in schema.json()["paths"]


# ---------------------------------------------------------------------------- 64x64 crops

def test_crops_are_scored_whole_and_match_torch(client, real, tiny_model_file):
    blobs, _ = real
    items = [(f"face{i}.jpg", b) for i, b in enumerate(blobs)]
    r = client.post("/predict", files=_files(*items))
    assert r.status_code == 200, r.text
    out = r.json()
    assert [e["filename"] for e in out] == [n for n, _ in items]
    arrays = [_rgb(b) for b in blobs]
    ref = _torch_scores(tiny_model_file, arrays)
    for e, s, arr in zip(out, ref, arrays):
        assert e["preprocess"] == "crop" and (e["width"], e["height"], e["mode"]) == (64, 64, "RGB")
        assert e["no_face"] is False and e["faces_found"] == 1 and len(e["faces"]) == 1
        face = e["faces"][0]
        assert face["box"] == [0, 0, 64, 64] and face["confidence"] is None
        assert face["score"] == pytest.approx(float(s), abs=1e-4)
        assert face["label"] == int(s >= 0.5) and face["class"] == ("clean face" if face["label"] else "occluded")
        assert np.array_equal(_from_data_url(face["crop"]), arr)  # the crop shown is exactly what was scored
        # one face: the photo's answer is that face's
        assert (e["label"], e["score"], e["class"]) == (face["label"], face["score"], face["class"])
        assert e["threshold"] == pytest.approx(0.5)


def test_raw_body_and_preview(client, real):
    blob = real[0][0]
    one = client.post("/predict?preview=1", files=_files(("a.jpg", blob))).json()
    assert len(one) == 1 and one[0]["filename"] == "a.jpg" and one[0]["preview"] == one[0]["faces"][0]["crop"]
    raw = client.post("/predict", content=blob, headers={"content-type": "image/jpeg", "x-filename": "raw.jpg"})
    assert raw.status_code == 200, raw.text
    assert raw.json()[0]["filename"] == "raw.jpg"
    assert raw.json()[0]["score"] == pytest.approx(one[0]["score"], abs=1e-6)


def test_other_modes_of_64px_images_are_crops(client, tiny_model_file):
    rng = np.random.default_rng(0)
    rgba = np.dstack([rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), np.full((64, 64), 255, np.uint8)])
    items = [("alpha.png", _png(rgba)), ("gray.png", _png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "L")),
             ("pal.gif", jpeg_bytes(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "GIF"))]
    out = client.post("/predict", files=_files(*items)).json()
    assert [(e["preprocess"], e["mode"]) for e in out] == [("crop", "RGBA"), ("crop", "L"), ("crop", "P")]
    ref = _torch_scores(tiny_model_file, [_rgb(b) for _, b in items])
    assert np.max(np.abs(np.array([e["score"] for e in out]) - ref)) < 1e-4


def test_preprocess_override(client, real, tiny_model_file):
    big_arr = np.asarray(Image.open(io.BytesIO(real[0][1])).convert("RGB").resize((150, 120)))
    big = _png(big_arr)
    r = client.post("/predict?preprocess=resize", files=_files(("big.png", big))).json()[0]
    assert r["preprocess"] == "resize" and (r["width"], r["height"]) == (150, 120)
    assert r["faces"][0]["box"] == [0, 0, 150, 120]
    squashed = np.asarray(Image.fromarray(big_arr).resize((64, 64), Image.BILINEAR, reducing_gap=2.0)).transpose(2, 0, 1)
    assert np.array_equal(_from_data_url(r["faces"][0]["crop"]), squashed)
    assert r["score"] == pytest.approx(float(_torch_scores(tiny_model_file, [squashed])[0]), abs=1e-4)
    msg = _assert_error(client.post("/predict?preprocess=crop", files=_files(("big.png", big))), 422)
    assert "big.png" in msg and "150x120" in msg
    _assert_error(client.post("/predict?preprocess=squash", files=_files(("big.png", big))), 422)


def test_exif_orientation_is_applied_first(client):
    arr = np.zeros((60, 80, 3), np.uint8)
    arr[:, :40] = 255  # left half white: after "rotate 90 CW" (orientation 6) the top half is white
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    r = client.post("/predict?preprocess=resize", files=_files(("rot.jpg", buf.getvalue()))).json()[0]
    assert (r["width"], r["height"]) == (60, 80)
    crop = _from_data_url(r["faces"][0]["crop"]).mean(0)
    assert crop[:28].mean() > 200 and crop[36:].mean() < 50


# ---------------------------------------------------------------------------- photos: faces, boxes, the label rule

@needs_detector
def test_photo_with_two_faces(client, tiny_model_file):
    from serve_scenes import inside, png_bytes, two_face_scene
    scene, regions, _ = two_face_scene()
    r = client.post("/predict", files=_files(("scene.png", png_bytes(scene))))
    assert r.status_code == 200, r.text
    e = r.json()[0]
    assert e["preprocess"] == "detect" and (e["width"], e["height"]) == scene.size and e["no_face"] is False
    assert e["faces_found"] == 2 and len(e["faces"]) == 2
    for region in regions:  # one box in each pasted crop
        assert sum(inside(f["box"], region) for f in e["faces"]) == 1, (region, [f["box"] for f in e["faces"]])
    areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in e["faces"]]
    assert areas == sorted(areas, reverse=True)
    crops = [_from_data_url(f["crop"]) for f in e["faces"]]
    assert all(c.shape == (3, 64, 64) for c in crops)
    ref = _torch_scores(tiny_model_file, crops)  # each face's score is its crop's score
    for f, s in zip(e["faces"], ref):
        assert 0.9 <= f["confidence"] <= 1 and f["score"] == pytest.approx(float(s), abs=1e-4)
        assert f["label"] == int(s >= 0.5)
    assert (e["label"], e["score"]) == (e["faces"][0]["label"], e["faces"][0]["score"])  # largest face decides


@needs_detector
def test_no_face_is_an_answer_not_an_error(client):
    from serve_scenes import canvas, png_bytes
    r = client.post("/predict", files=_files(("empty.png", png_bytes(canvas((320, 200))))))
    assert r.status_code == 200, r.text
    e = r.json()[0]
    assert e == {**e, "no_face": True, "label": 0, "score": None, "faces": [], "faces_found": 0,
                 "class": "no face found", "preprocess": "detect"}


def test_saliency_is_limited_per_request(client, real):
    from clearface.serve.photos import MAX_SALIENCY_FACES
    blobs = real[0][: MAX_SALIENCY_FACES + 2]
    r = client.post("/predict?saliency=1", files=_files(*[(f"{i}.jpg", b) for i, b in enumerate(blobs)]))
    assert r.status_code == 200, r.text
    faces = [e["faces"][0] for e in r.json()]
    done = [f for f in faces if f["saliency"]]
    assert len(done) == MAX_SALIENCY_FACES and faces[:MAX_SALIENCY_FACES] == done
    for f in done:
        with Image.open(io.BytesIO(base64.b64decode(f["saliency"].split(",", 1)[1]))) as im:
            assert im.size == (128, 128)
    for f in faces[MAX_SALIENCY_FACES:]:
        assert f["saliency"] is None and str(MAX_SALIENCY_FACES) in f["saliency_note"]


def test_onnx_model_file(tiny_model_file, tmp_path, real):
    from fastapi.testclient import TestClient

    from clearface.export import export_onnx
    from clearface.serve.app import create_app
    path = tmp_path / "m.onnx"
    export_onnx(tiny_model_file, path)
    with TestClient(create_app(path)) as c:
        h = c.get("/health").json()
        assert h["model"] == "m.onnx" and h["engine"] == "onnx" and h["saliency"] is False
        assert len(c.post("/predict", files=_files(("a.jpg", real[0][0]))).json()) == 1
        _assert_error(c.post("/predict?saliency=1", files=_files(("a.jpg", real[0][0]))), 400)


# ---------------------------------------------------------------------------- bad input: 4xx JSON, never a 500

def test_not_an_image(client, real):
    msg = _assert_error(client.post("/predict", files=_files(("notes.txt", b"hello, I am not an image"))), 422)
    assert "notes.txt" in msg and "not an image" in msg
    msg = _assert_error(client.post("/predict", files=_files(("ok.jpg", real[0][0]), ("bad.jpg", b"\xff\xd8junk"))), 422)
    assert "bad.jpg" in msg


def test_truncated_image(client, real):
    blob = real[0][0]
    msg = _assert_error(client.post("/predict", files=_files(("cut.jpg", blob[: len(blob) // 2]))), 422)
    assert "cut.jpg" in msg and "truncated" in msg
    png = _png(np.zeros((64, 64, 3), np.uint8) + 7)
    _assert_error(client.post("/predict", files=_files(("cut.png", png[:60]))), 422)


def test_empty_inputs(client):
    assert "empty" in _assert_error(client.post("/predict"), 400)
    assert "empty" in _assert_error(client.post("/predict", content=b"", headers={"content-type": "image/jpeg"}), 400)
    assert "empty" in _assert_error(client.post("/predict", files=_files(("zero.jpg", b""))), 400)
    msg = _assert_error(client.post("/predict", data={"comment": "no image"}, files={"other": ("x.jpg", b"abc")}), 400)
    assert "'file'" in msg and "other" in msg
    _assert_error(client.post("/predict", data={"comment": "no image"}), 415)  # urlencoded form


def test_bad_content_types_and_bodies(client):
    _assert_error(client.post("/predict", content=b"hello", headers={"content-type": "text/plain"}), 415)
    _assert_error(client.post("/predict", content=b"hello"), 415)
    _assert_error(client.post("/predict", content=b"--xyz\r\ngarbage",
                              headers={"content-type": "multipart/form-data; boundary=xyz"}), 400)
    _assert_error(client.post("/predict", content=b"abc", headers={"content-type": "multipart/form-data"}), 400)
    _assert_error(client.post("/predict?saliency=maybe", content=b"abc", headers={"content-type": "image/png"}), 422)
    _assert_error(client.get("/nope"), 404)
    _assert_error(client.get("/predict"), 405)


def test_too_many_files(client, small_client, real):
    blob = real[0][0]
    msg = _assert_error(client.post("/predict", files=_files(*[(f"{i}.jpg", blob) for i in range(65)])), 413)
    assert "too many files" in msg and "64" in msg
    assert client.post("/predict", files=_files(*[(f"{i}.jpg", blob) for i in range(64)])).status_code == 200
    _assert_error(small_client.post("/predict", files=_files(*[(f"{i}.jpg", blob) for i in range(4)])), 413)
    assert len(small_client.post("/predict", files=_files(*[(f"{i}.jpg", blob) for i in range(3)])).json()) == 3


def test_body_over_the_size_limit(client, small_client, real):
    big = b"\xff" * (10 * 1024 * 1024 + 1)
    assert "limit" in _assert_error(client.post("/predict", files=_files(("big.jpg", big))), 413)
    _assert_error(client.post("/predict", content=big, headers={"content-type": "image/jpeg"}), 413)

    def chunks():  # no Content-Length (chunked): counted while reading
        for _ in range(20):
            yield b"\x00" * 5000

    r = small_client.post("/predict", content=chunks(), headers={"content-type": "image/jpeg"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    _assert_error(r, 413)
    _assert_error(small_client.post("/predict", content=b"\x00" * 60_001, headers={"content-type": "image/jpeg"}), 413)
    assert small_client.post("/predict", content=real[0][0], headers={"content-type": "image/jpeg"}).status_code == 200


def test_pixel_limit_and_decompression_bombs(client, small_client):
    buf = io.BytesIO()  # 5000 x 5000 1-bit PNG: a few kB on the wire, 25 M pixels > 4096 * 4096
    Image.new("1", (5000, 5000)).save(buf, format="PNG", optimize=True)
    assert len(buf.getvalue()) < 200_000
    msg = _assert_error(client.post("/predict", files=_files(("wide.png", buf.getvalue()))), 413)
    assert "wide.png" in msg and "5000x5000" in msg
    _assert_error(client.post("/predict", files=_files(("bomb.png", png_header_only(100_000, 100_000)))), 413)
    _assert_error(client.post("/predict", files=_files(("bomb2.png", png_header_only(5000, 4000)))), 413)
    _assert_error(small_client.post("/predict", files=_files(("p.png", _png(np.zeros((101, 100, 3), np.uint8))))), 413)
    ok = small_client.post("/predict?preprocess=resize", files=_files(("p.png", _png(np.zeros((100, 100, 3), np.uint8)))))
    assert ok.status_code == 200, ok.text


def test_request_pixel_budget_is_counted_before_decoding(small_client, client, monkeypatch):
    from clearface.serve import photos
    decoded = []
    real_open = photos._open
    monkeypatch.setattr(photos, "_open", lambda data, name, mp: decoded.append(name) or real_open(data, name, mp))
    png = _png(np.zeros((100, 100, 3), np.uint8))  # 10 000 pixels each; the budget is 25 000
    items = [("a.png", png), ("b.png", png), ("c.png", png)]
    msg = _assert_error(small_client.post("/predict?preprocess=resize", files=_files(*items)), 413)
    assert "c.png" in msg and "25000" in msg and decoded == []  # refused before any pixel was decoded
    assert small_client.post("/predict?preprocess=resize", files=_files(*items[:2])).status_code == 200
    assert decoded == ["a.png", "b.png"]
    # the default budget: 64 blank 4096^2 PNGs (a few MB on the wire) are refused before decoding
    blank = io.BytesIO()
    Image.new("L", (4096, 4096)).save(blank, format="PNG", optimize=True)
    decoded.clear()
    msg = _assert_error(client.post("/predict", files=_files(*[(f"{i}.png", blank.getvalue()) for i in range(64)])), 413)
    assert "2.png" in msg and str(2 * 4096 * 4096) in msg and decoded == []


def test_busy_server_answers_503_with_retry_after(app, client, real):
    from contextlib import ExitStack

    from clearface.serve.limits import InputError, WorkGate
    gate = app.state.gate
    with ExitStack() as busy:  # every work slot taken, as by slow requests in flight
        for _ in range(gate.max_requests):
            busy.enter_context(gate.working(1))
        r = client.post("/predict", files=_files(("a.jpg", real[0][0])))
        _assert_error(r, 503)
        assert int(r.headers["retry-after"]) >= 1
        assert client.get("/health").status_code == 200  # only the work is bounded, not the service
    with ExitStack() as busy:  # every body-reading slot taken
        for _ in range(gate.max_readers):
            busy.enter_context(gate.reading())
        _assert_error(client.post("/predict", files=_files(("a.jpg", real[0][0]))), 503)
    assert (gate.readers, gate.requests, gate.pixels) == (0, 0, 0)
    assert client.post("/predict", files=_files(("a.jpg", real[0][0]))).status_code == 200
    # pixels in flight: a second big request is turned away; a request alone always fits
    g = WorkGate(max_requests=4, max_pixels=100)
    with g.working(80):
        with pytest.raises(InputError) as exc, g.working(30):
            pass
        assert exc.value.status == 503 and exc.value.headers["Retry-After"] == "1"
        with g.working(20):
            assert (g.requests, g.pixels) == (2, 100)
    with g.working(100):
        assert (g.requests, g.pixels) == (1, 100)
    assert (g.requests, g.pixels) == (0, 0)


def test_unexpected_errors_are_json_500(tiny_model_file, cache, real):
    from fastapi.testclient import TestClient

    from clearface.serve.app import create_app
    app = create_app(tiny_model_file, cache_dir=cache)

    def broken(images, batch_size=512):
        raise RuntimeError("simulated bug")

    app.state.service.score_fn = broken
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/predict", files=_files(("a.jpg", real[0][0])))
        assert "RuntimeError" in _assert_error(r, 500)
        assert c.get("/health").status_code == 200
        assert (app.state.gate.requests, app.state.gate.readers) == (0, 0)  # the slots came back


def test_cli_serve_bad_model_is_one_line_error(tmp_path, capsys):
    import socket

    from clearface.cli import main
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["serve", "--model", str(tmp_path / "missing.pt"), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert "missing.pt" in err and len(err.strip().splitlines()) == 1 and "serving" not in err
