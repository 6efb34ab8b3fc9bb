"""The HTTP service through FastAPI's TestClient: answers, conversions, limits and errors (never a 500)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import jpeg_bytes, real_slice

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


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
    """Same model, tight limits: 3 files, 60 kB body, 10 000 pixels."""
    from fastapi.testclient import TestClient

    from clearface.serve.app import create_app
    app = create_app(tiny_model_file, engine="auto", cache_dir=cache, max_files=3, max_body_bytes=60_000,
                     max_pixels=10_000)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def real():
    blobs, labels = real_slice(8, start=1000)
    return blobs, labels


def _decode(blob: bytes) -> np.ndarray:
    from clearface.data.ingest import to_rgb64
    with Image.open(io.BytesIO(blob)) as img:
        img.load()
        return to_rgb64(img)


def _torch_scores(model_file, arrays):
    from clearface.predict import load_engine
    fn, _ = load_engine(model_file, engine="torch")
    return fn(np.stack(arrays))


def _files(*items):
    return [("file", (name, data, "application/octet-stream")) for name, data in items]


def _png(arr_hwc, mode=None) -> bytes:
    img = Image.fromarray(arr_hwc) if mode is None else Image.fromarray(arr_hwc).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (a decompression bomb, without the bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _assert_error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


# ---------------------------------------------------------------------------- happy paths

def test_health(client):
    from clearface import __version__
    r = client.get("/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok"
    assert h["model"] == "tiny.pt" and h["members"] == ["cfnet_tiny"]
    assert h["version"] == __version__ and h["threshold"] == pytest.approx(0.5)
    assert h["engine"] == "onnx"
    assert h["limits"] == {"max_files": 64, "max_body_bytes": 10 * 1024 * 1024, "max_pixels": 4096 * 4096}


def test_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "<script>" in html and "<style>" in html and 'type="file"' in html
    low = html.lower()
    for external in ('src="http', "src='http", 'href="http', "href='http", "<link", "@import", "url(http", "//cdn"):
        assert external not in low, external


def test_predict_real_images_match_torch(client, real, tiny_model_file):
    blobs, _ = real
    items = [(f"face{i}.jpg", b) for i, b in enumerate(blobs)]
    r = client.post("/predict", files=_files(*items))
    assert r.status_code == 200, r.text
    out = r.json()
    assert isinstance(out, list) and [e["filename"] for e in out] == [n for n, _ in items]
    ref = _torch_scores(tiny_model_file, [_decode(b) for b in blobs])
    got = np.array([e["score"] for e in out])
    assert np.max(np.abs(got - ref)) < 1e-4
    for e, s in zip(out, ref):
        assert e["label"] == int(s >= 0.5) and e["class"] == ("clean face" if e["label"] else "occluded")
        assert e["threshold"] == pytest.approx(0.5)
        assert e["resized"] is False and (e["width"], e["height"], e["mode"]) == (64, 64, "RGB")
        assert e["resized_from"] is None


def test_single_image_and_raw_body(client, real):
    blob = real[0][0]
    one = client.post("/predict", files=_files(("a.jpg", blob))).json()
    assert len(one) == 1 and one[0]["filename"] == "a.jpg"
    raw = client.post("/predict", content=blob, headers={"content-type": "image/jpeg", "x-filename": "raw.jpg"})
    assert raw.status_code == 200, raw.text
    assert raw.json()[0]["filename"] == "raw.jpg"
    assert raw.json()[0]["score"] == pytest.approx(one[0]["score"], abs=1e-6)


def test_other_sizes_and_modes_are_converted(client, real, tiny_model_file):
    rng = np.random.default_rng(0)
    big = np.asarray(Image.open(io.BytesIO(real[0][1])).convert("RGB").resize((150, 120)))
    rgba = np.dstack([rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), rng.integers(0, 256, (40, 50), dtype=np.uint8)])
    items = [("big.png", _png(big)), ("alpha.png", _png(rgba)),
             ("gray.png", _png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "L")),
             ("pal.gif", jpeg_bytes(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "GIF"))]
    r = client.post("/predict", files=_files(*items))
    assert r.status_code == 200, r.text
    out = r.json()
    assert [(e["resized"], e["resized_from"]) for e in out] == [
        (True, "150x120 RGB"), (True, "50x40 RGBA"), (True, "64x64 L"), (True, "64x64 P")]
    assert (out[0]["width"], out[0]["height"], out[0]["mode"]) == (150, 120, "RGB")
    ref = _torch_scores(tiny_model_file, [_decode(b) for _, b in items])  # the --resize conversion
    assert np.max(np.abs(np.array([e["score"] for e in out]) - ref)) < 1e-4


def test_preview_and_saliency(client, real):
    r = client.post("/predict?preview=1&saliency=1", files=_files(("a.jpg", real[0][0])))
    assert r.status_code == 200, r.text
    e = r.json()[0]
    assert e["preview"].startswith("data:image/png;base64,")
    if client.get("/health").json()["saliency"]:
        assert e["saliency"].startswith("data:image/png;base64,")


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
    # one bad file among good ones: the request fails and names the bad one
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
    # multipart without any 'file' part
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
    msg = _assert_error(client.post("/predict", files=_files(("big.jpg", big))), 413)
    assert "limit" in msg
    _assert_error(client.post("/predict", content=big, headers={"content-type": "image/jpeg"}), 413)

    # no Content-Length (chunked): counted while reading
    def chunks():
        for _ in range(20):
            yield b"\x00" * 5000

    r = small_client.post("/predict", content=chunks(), headers={"content-type": "image/jpeg"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    _assert_error(r, 413)
    # declared length over the limit is refused before reading
    _assert_error(small_client.post("/predict", content=b"\x00" * 60_001, headers={"content-type": "image/jpeg"}), 413)
    assert small_client.post("/predict", content=real[0][0], headers={"content-type": "image/jpeg"}).status_code == 200


def test_pixel_limit_and_decompression_bombs(client, small_client):
    # 5000 x 5000 1-bit PNG: a few kB on the wire, 25 M pixels > 4096 * 4096
    buf = io.BytesIO()
    Image.new("1", (5000, 5000)).save(buf, format="PNG", optimize=True)
    assert len(buf.getvalue()) < 200_000
    msg = _assert_error(client.post("/predict", files=_files(("wide.png", buf.getvalue()))), 413)
    assert "wide.png" in msg and "5000x5000" in msg
    # header claims 100000 x 100000 (PIL's own bomb check fires, still a 413)
    _assert_error(client.post("/predict", files=_files(("bomb.png", _png_header_only(100_000, 100_000)))), 413)
    _assert_error(client.post("/predict", files=_files(("bomb2.png", _png_header_only(5000, 4000)))), 413)
    # the per-app limit
    _assert_error(small_client.post("/predict", files=_files(("p.png", _png(np.zeros((101, 100, 3), np.uint8))))), 413)
    assert small_client.post("/predict", files=_files(("p.png", _png(np.zeros((100, 100, 3), np.uint8))))).status_code == 200


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


def test_cli_serve_bad_model_is_one_line_error(tmp_path, capsys):
    from clearface.cli import main
    assert main(["serve", "--model", str(tmp_path / "missing.pt"), "--port", "0"]) == 2
    assert "missing.pt" in capsys.readouterr().err
