"""ONNX export: same scores and labels as PyTorch, metadata round trip, dynamic batch, engines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clearface.errors import ClearfaceError


@pytest.fixture(scope="module")
def real_images(real_small):
    from clearface.data import load_images
    zip_path, _, labels = real_small
    return load_images(zip_path, use_cache=False).images, labels


@pytest.fixture(scope="module")
def trained_model_file(real_images, tmp_path_factory):
    """A cheaply *trained* 2-member ensemble (non-trivial BN statistics and weights), TTA none."""
    import torch

    from clearface.settings import resolve
    from clearface.modelfile import make_model_file, save_model_file
    from clearface.models import IMAGENET_MEAN, IMAGENET_STD, get_model

    images, labels = real_images
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = (torch.from_numpy(np.asarray(images[:128])).float() / 255 - mean) / std
    y = torch.from_numpy(labels[:128].astype(np.float32))
    members = []
    for seed, kwargs in ((1, {}), (2, {"width": 12})):
        torch.manual_seed(seed)
        net = get_model("cfnet_tiny", **kwargs)
        opt = torch.optim.Adam(net.parameters(), 3e-3)
        net.train()
        for step in range(12):
            idx = torch.randint(0, len(x), (32,))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        members.append({"model": "cfnet_tiny", "model_kwargs": kwargs, "build_kwargs": {},
                        "state_dict": net.state_dict()})
    cfg = resolve(overrides={"model": "cfnet_tiny"})
    blob = make_model_file(members, IMAGENET_MEAN, IMAGENET_STD, "none", 0.61, "min_hter",
                           "validation split (test)", {"val": {"hter": 0.3}}, cfg)
    path = tmp_path_factory.mktemp("trained") / "trained.pt"
    save_model_file(blob, path)
    return path


def _torch_scores(model_file, images):
    from clearface.engines import load_engine
    eng = load_engine(model_file, engine="torch")
    assert eng.info["engine"] == "torch"
    return eng.score(images), eng.info


@pytest.mark.parametrize("which", ["tiny_model_file", "trained_model_file"])
def test_onnx_matches_torch_on_real_images(which, request, real_images, tmp_path):
    from clearface.calibration import labels_from_scores
    from clearface.engines import OnnxEngine
    from clearface.export import export_onnx

    model_file = request.getfixturevalue(which)
    images, _ = real_images
    out = tmp_path / "m.onnx"
    meta = export_onnx(model_file, out)
    assert out.exists() and meta["max_abs_diff"] <= 1e-4
    assert not [p for p in tmp_path.iterdir() if p.name != "m.onnx"], "temporary file left behind"

    ref, info = _torch_scores(model_file, images)
    eng = OnnxEngine(out)
    got = eng.score(images, batch_size=64)
    assert got.dtype == np.float32 and got.shape == (len(images),)
    assert np.max(np.abs(got - ref)) < 1e-4
    assert np.array_equal(labels_from_scores(got, eng.info["threshold"]), labels_from_scores(ref, info["threshold"]))
    assert eng.info["threshold"] == pytest.approx(info["threshold"])


def test_metadata_round_trip(trained_model_file, tmp_path):
    import onnx

    from clearface import __version__
    from clearface.engines import OnnxEngine
    from clearface.export import export_onnx, read_metadata
    from clearface.modelfile import CLASSES, load_model_file

    out = tmp_path / "m.onnx"
    export_onnx(trained_model_file, out)
    blob = load_model_file(trained_model_file)
    meta = read_metadata(out)
    assert meta["threshold"] == pytest.approx(0.61)
    assert meta["threshold_method"] == "min_hter"
    assert meta["threshold_source"] == "validation split (test)"
    assert meta["preprocess"]["size"] == 64
    assert meta["preprocess"]["mean"] == pytest.approx(blob["preprocess"]["mean"])
    assert meta["preprocess"]["std"] == pytest.approx(blob["preprocess"]["std"])
    assert meta["classes"] == CLASSES and meta["positive_class"] == 1
    assert meta["tta"] == "none"
    assert [m["model"] for m in meta["members"]] == ["cfnet_tiny", "cfnet_tiny"]
    assert meta["members"][1]["model_kwargs"] == {"width": 12}
    assert meta["clearface_version"] == __version__
    assert len(meta["source_sha256"]) == 64

    proto = onnx.load(str(out))
    raw = {p.key: p.value for p in proto.metadata_props}
    for v in raw.values():
        json.loads(v)  # every value is a JSON string
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,), (outp,) = proto.graph.input, proto.graph.output
    assert inp.name == "image" and outp.name == "score"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value  # dynamic batch axis
    assert [d.dim_value for d in dims[1:]] == [3, 64, 64]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT

    info = OnnxEngine(out).info
    assert set(info) >= {"threshold", "threshold_method", "threshold_source", "tta", "clearface_version", "model",
                         "members"}
    assert info["model"] == str(out) and info["members"] == ["cfnet_tiny", "cfnet_tiny"]
    assert info["threshold"] == pytest.approx(0.61) and info["tta"] == "none"


def test_dynamic_batch(tiny_model_file, real_images, tmp_path):
    from clearface.engines import OnnxEngine
    from clearface.export import export_onnx

    images, _ = real_images
    out = tmp_path / "m.onnx"
    export_onnx(tiny_model_file, out)
    eng = OnnxEngine(out)
    ref, _ = _torch_scores(tiny_model_file, images[:7])
    one = eng.score(images[:1])
    seven = eng.score(images[:7])
    assert one.shape == (1,) and seven.shape == (7,)
    assert np.max(np.abs(seven - ref)) < 1e-4
    assert abs(one[0] - seven[0]) < 1e-5
    assert np.max(np.abs(eng.score(images[:7], batch_size=3) - seven)) < 1e-5
    # raw session: float input of any batch size
    x = images[:7].astype(np.float32) / 255
    for n in (1, 7):
        (s,) = eng.session.run(["score"], {"image": x[:n]})
        assert s.shape == (n,)
    assert eng.score(images[:0]).shape == (0,)


def test_bad_onnx_files_name_the_file(tmp_path, tiny_model_file):
    import onnx

    from clearface.engines import OnnxEngine
    from clearface.export import export_onnx, read_metadata

    missing = tmp_path / "missing.onnx"
    with pytest.raises(ClearfaceError, match="missing.onnx"):
        OnnxEngine(missing)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf \x00\x01\x02")
    with pytest.raises(ClearfaceError, match="junk.onnx"):
        OnnxEngine(junk)
    with pytest.raises(ClearfaceError, match="junk.onnx"):
        read_metadata(junk)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ClearfaceError, match="empty.onnx"):
        OnnxEngine(empty)
    # a valid ONNX graph without clearface metadata
    good = tmp_path / "good.onnx"
    export_onnx(tiny_model_file, good)
    proto = onnx.load(str(good))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    with pytest.raises(ClearfaceError, match="plain.onnx.*clearface"):
        OnnxEngine(plain)
    with pytest.raises(ClearfaceError, match="must end in .onnx"):
        export_onnx(tiny_model_file, tmp_path / "m.bin")
    with pytest.raises(ClearfaceError, match="no such folder"):
        export_onnx(tiny_model_file, tmp_path / "nope" / "m.onnx")


def test_failed_export_leaves_nothing(tiny_model_file, tmp_path, monkeypatch):
    import clearface.export as ex

    def boom(*a, **k):
        raise ClearfaceError("ONNX export failed (simulated)")

    monkeypatch.setattr(ex, "_torch_export", boom)
    with pytest.raises(ClearfaceError, match="simulated"):
        ex.export_onnx(tiny_model_file, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_cli_export_then_predict_with_onnx(tiny_model_file, real_small, tmp_path, capsys):
    from clearface.cli import main

    zip_path, _, _ = real_small
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "--model", str(tiny_model_file), "--out", str(onnx_path)]) == 0
    assert onnx_path.exists()
    cache = tmp_path / "cache"
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    sa, sb = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["predict", "--model", str(onnx_path), "--data", str(zip_path), "--out", str(a), "--scores", str(sa),
                 "--cache-dir", str(cache)]) == 0
    assert main(["predict", "--model", str(tiny_model_file), "--engine", "torch", "--data", str(zip_path),
                 "--out", str(b), "--scores", str(sb), "--cache-dir", str(cache)]) == 0
    assert a.read_text() == b.read_text() and len(a.read_text().split()) == 300
    score_a = np.array([float(line.split(",")[1]) for line in sa.read_text().split()[1:]])
    score_b = np.array([float(line.split(",")[1]) for line in sb.read_text().split()[1:]])
    assert np.max(np.abs(score_a - score_b)) < 1e-4

    # .onnx cannot run in torch; a bad file is a one-line error, exit 2
    assert main(["predict", "--model", str(onnx_path), "--engine", "torch", "--data", str(zip_path),
                 "--out", str(tmp_path / "c.txt")]) == 2
    junk = tmp_path / "junk.onnx"
    junk.write_text("nope")
    capsys.readouterr()
    assert main(["predict", "--model", str(junk), "--data", str(zip_path), "--out", str(tmp_path / "c.txt")]) == 2
    assert "junk.onnx" in capsys.readouterr().err
    assert main(["export", "--model", str(tmp_path / "none.pt"), "--out", str(tmp_path / "x.onnx")]) == 2


def test_auto_engine_caches_export_and_falls_back(tiny_model_file, real_images, tmp_path, monkeypatch, capsys):
    import clearface.export as ex
    from clearface.engines import load_engine, onnx_cache_path

    images, _ = real_images
    cache = tmp_path / "cache"
    eng = load_engine(tiny_model_file, engine="auto", cache_dir=cache)
    fn, info = eng.score, eng.info
    assert info["engine"] == "onnx" and info["model"] == str(tiny_model_file)
    cached = onnx_cache_path(tiny_model_file, cache)
    assert cached.exists() and info["onnx"] == str(cached)
    ref, _ = _torch_scores(tiny_model_file, images[:20])
    assert np.max(np.abs(fn(images[:20]) - ref)) < 1e-4

    # second time: served from the cache, no export
    monkeypatch.setattr(ex, "export_blob", lambda *a, **k: pytest.fail("re-exported despite cache"))
    info2 = load_engine(tiny_model_file, engine="auto", cache_dir=cache).info
    assert info2["engine"] == "onnx"

    # export failure: auto falls back to torch with a warning, onnx raises
    def boom(*a, **k):
        raise RuntimeError("simulated exporter crash")

    monkeypatch.setattr(ex, "export_blob", boom)
    other = tmp_path / "cache2"
    capsys.readouterr()
    eng3 = load_engine(tiny_model_file, engine="auto", cache_dir=other)
    fn, info3 = eng3.score, eng3.info
    assert info3["engine"] == "torch"
    assert "simulated exporter crash" in capsys.readouterr().err
    assert np.max(np.abs(fn(images[:20]) - ref)) == 0
    with pytest.raises(ClearfaceError, match="simulated"):
        load_engine(tiny_model_file, engine="onnx", cache_dir=other)
    # a damaged cache entry is replaced, not fatal
    monkeypatch.undo()
    cached.write_bytes(b"garbage")
    info4 = load_engine(tiny_model_file, engine="auto", cache_dir=cache).info
    assert info4["engine"] == "onnx"
    # a bad model file stays the user's error in every engine
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    for engine in ("auto", "torch", "onnx"):
        with pytest.raises(ClearfaceError, match="bad.pt"):
            load_engine(bad, engine=engine, cache_dir=cache)
    with pytest.raises(ClearfaceError, match="unknown engine"):
        load_engine(tiny_model_file, engine="tensorrt")
