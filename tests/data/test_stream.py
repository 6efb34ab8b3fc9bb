"""Decoding overlapped with scoring (clearface.data.stream): same images, same scores, same labels,
same errors as decoding everything first; bounded look-ahead; no decoding thread left behind."""

import re
import subprocess
import sys
import threading

import numpy as np
import pytest

from clearface.data import load_images
from clearface.data import stream
from clearface.errors import ClearfaceError
from conftest import jpeg_bytes, real_slice, write_zip


def _decode_threads():
    return [t for t in threading.enumerate() if t.name.startswith("clearface-decode")]


@pytest.fixture(scope="module")
def real_zip(tmp_path_factory):
    blobs, _ = real_slice(300)
    return write_zip(tmp_path_factory.mktemp("stream") / "real.zip", blobs, "img")


@pytest.fixture(scope="module")
def late_corrupt_zip(tmp_path_factory):
    """300 real images; 000290 and 000295 are corrupt (a later chunk, after some have scored)."""
    blobs, _ = real_slice(300)
    blobs[289], blobs[294] = b"\xff\xd8garbage", b"not a jpeg"
    return write_zip(tmp_path_factory.mktemp("stream_bad") / "bad.zip", blobs, "img")


@pytest.mark.parametrize("chunk", [1, 7, 128, 300, 1000])
def test_chunks_arrive_in_order_with_the_one_pass_pixels(real_zip, chunk):
    ref = load_images(real_zip, use_cache=False)
    out = np.zeros_like(ref.images)
    seen = []
    got = stream.decode_while(real_zip, ref.names, "crop", out, lambda x: (seen.append(x.copy()), len(x))[1],
                              chunk=chunk)
    assert got == [len(s) for s in seen] and sum(got) == 300
    assert np.array_equal(np.concatenate(seen), ref.images) and np.array_equal(out, ref.images)
    assert not _decode_threads()


def test_look_ahead_is_bounded(real_zip, monkeypatch):
    decoded = []
    real = stream.decode_into
    monkeypatch.setattr(stream, "decode_into", lambda read, names, *a: (real(read, names, *a), decoded.append(names)))
    names = load_images(real_zip, use_cache=False).names
    out = np.empty((300, 3, 64, 64), np.uint8)
    at_consume = []
    stream.decode_while(real_zip, names, "crop", out, lambda x: at_consume.append(len(decoded)), chunk=10, ahead=2)
    assert len(at_consume) == 30
    assert all(n <= k + 1 + 2 for k, n in enumerate(at_consume)), at_consume  # chunk k + at most 2 ahead


def test_corrupt_file_in_a_later_chunk_is_the_same_error(late_corrupt_zip):
    with pytest.raises(ClearfaceError) as one_pass:
        load_images(late_corrupt_zip, use_cache=False)
    names = [f"img/{i:06d}.jpg" for i in range(1, 301)]
    consumed = []
    with pytest.raises(ClearfaceError) as streamed:
        stream.decode_while(late_corrupt_zip, names, "crop", np.empty((300, 3, 64, 64), np.uint8),
                            lambda x: consumed.append(len(x)), chunk=64)
    def same(e):  # PIL names the BytesIO it read by its address
        return re.sub(r"0x[0-9a-f]+", "0x", str(e.value))

    assert same(streamed) == same(one_pass) and "000290.jpg" in same(streamed)
    assert sum(consumed) == 256  # the chunks before the bad one were used; none after
    assert not _decode_threads()


def test_consumer_error_stops_decoding(real_zip):
    names = load_images(real_zip, use_cache=False).names

    def boom(x):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stream.decode_while(real_zip, names, "crop", np.empty((300, 3, 64, 64), np.uint8), boom, chunk=10)
    assert not _decode_threads()


def test_wrong_size_image_names_the_file(tmp_path):
    rng = np.random.default_rng(0)
    blobs = [jpeg_bytes(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(5)]
    blobs[3] = jpeg_bytes(rng.integers(0, 255, (80, 64, 3), dtype=np.uint8))
    z = write_zip(tmp_path / "odd.zip", blobs)
    names = [f"img/{i:06d}.jpg" for i in range(1, 6)]
    with pytest.raises(ClearfaceError, match=r"000004\.jpg: image is 64x80 RGB, expected 64x64"):
        stream.decode_while(z, names, "crop", np.empty((5, 3, 64, 64), np.uint8), len, chunk=2)
    out = np.empty((5, 3, 64, 64), np.uint8)
    stream.decode_while(z, names, "resize", out, len, chunk=2)
    assert np.array_equal(out, load_images(z, step="resize", use_cache=False).images)


@pytest.mark.parametrize("engine,batch", [("onnx", 512), ("onnx", 100), ("torch", 64)])
def test_overlapped_scores_and_labels_are_the_sequential_ones(real_zip, tiny_model_file, tmp_path, engine, batch):
    from clearface.calibration import labels_from_scores
    from clearface.engines import load_engine
    from clearface.preprocess import prepare, prepare_and_score
    eng = load_engine(tiny_model_file, engine, tmp_path / "cache")
    ref = prepare(real_zip, "crop")
    ref_scores = ref.score(eng.score, batch)
    got, scores = prepare_and_score(real_zip, "crop", eng.score, batch)
    assert scores.dtype == np.float32 and scores.tobytes() == ref_scores.tobytes()
    assert got.names == ref.names and np.array_equal(got.images, ref.images) and got.has_face.all()
    assert labels_from_scores(scores, 0.5).tobytes() == labels_from_scores(ref_scores, 0.5).tobytes()


def test_predict_label_file_is_byte_identical(real_zip, tiny_model_file, tmp_path):
    from clearface.calibration import labels_from_scores
    from clearface.engines import load_engine
    from clearface.predict import predict
    from clearface.preprocess import prepare
    out = tmp_path / "labels.txt"
    info = predict(tiny_model_file, real_zip, out, cache_dir=tmp_path / "cache", batch_size=128)
    eng = load_engine(tiny_model_file, "auto", tmp_path / "cache")
    labels = labels_from_scores(prepare(real_zip, "crop").score(eng.score, 128), info["threshold"])
    assert out.read_bytes() == "".join(f"{v}\n" for v in labels).encode()


def test_cli_late_corrupt_image_one_error_exit_2_no_output(late_corrupt_zip, tiny_model_file, tmp_path):
    out = tmp_path / "labels.txt"
    res = subprocess.run([sys.executable, "-m", "clearface.cli", "predict", "--model", str(tiny_model_file),
                          "--data", str(late_corrupt_zip), "--out", str(out), "--batch-size", "64",
                          "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 2, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("clearface: error:")]
    assert len(errors) == 1 and "000290.jpg" in errors[0] and "corrupt" in errors[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not list(tmp_path.glob("*labels.txt*"))


def test_prefaulted_images_are_a_writable_array_of_the_stream_shape():
    from clearface.data.stream import prefaulted_images
    a = prefaulted_images(3)
    assert a.shape == (3, 3, 64, 64) and a.dtype == np.uint8 and a.flags.writeable and a.flags.c_contiguous
    a[:] = 7
    assert int(a.sum()) == 7 * a.size
    assert prefaulted_images(0).shape == (0, 3, 64, 64)
