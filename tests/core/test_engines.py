"""Engines: one batch loop, one normalise + flip TTA, shared by training-time validation and shipped scoring."""

import numpy as np
import pytest
import torch

from clearface.engines import TorchEngine, load_engine, score_in_batches
from clearface.errors import ClearfaceError


def test_batch_loop_keeps_order_and_handles_remainders_and_empty_input():
    x = np.arange(10)
    seen = []

    def chunk(c):
        seen.append(len(c))
        return c * 2.0

    assert score_in_batches(chunk, x, 4).tolist() == (x * 2.0).tolist() and seen == [4, 4, 2]
    assert score_in_batches(chunk, x[:0], 4).shape == (0,)


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_training_validation_scores_equal_the_model_files(tta):
    from clearface.models import IMAGENET_MEAN, IMAGENET_STD
    from clearface.modelfile import make_model_file
    from clearface.settings import resolve
    from clearface.train.module import HTERModule
    cfg = resolve(overrides={"model": "cfnet_tiny", "tta": tta, "channels_last": False})
    torch.manual_seed(0)
    module = HTERModule(cfg, pos_weight=1.0).eval()
    member = {"model": "cfnet_tiny", "model_kwargs": {}, "build_kwargs": {}, "state_dict": module.model.state_dict()}
    blob = make_model_file([member], IMAGENET_MEAN, IMAGENET_STD, tta, 0.5, "min_hter", "test", {}, cfg)
    images = np.random.default_rng(0).integers(0, 256, (7, 3, 64, 64), dtype=np.uint8)
    with torch.inference_mode():
        during_training = module.score(torch.from_numpy(images)).numpy()
    shipped = TorchEngine(blob).score(images, batch_size=3)
    np.testing.assert_allclose(during_training, shipped, rtol=0, atol=1e-6)


def test_engine_info_and_errors(tiny_model_file):
    eng = load_engine(tiny_model_file, engine="torch")
    assert eng.info["engine"] == "torch" and eng.info["threshold"] == 0.5 and eng.info["members"] == ["cfnet_tiny"]
    assert eng.score(np.zeros((2, 3, 64, 64), np.uint8)).dtype == np.float32
    with pytest.raises(ClearfaceError, match="unknown engine"):
        load_engine(tiny_model_file, engine="tensorrt")
    with pytest.raises(ClearfaceError, match="has no embed"):
        eng.embed(np.zeros((1, 3, 64, 64), np.uint8))


def test_onnx_sessions_spin_unless_a_decoder_shares_the_cores(tiny_model_file, tmp_path, monkeypatch):
    """Idle onnxruntime threads busy-wait by default (low latency for the service); where files decode
    in a thread beside the scoring (``predict``), they must sleep instead, or they burn its core."""
    spinning = load_engine(tiny_model_file, engine="onnx", cache_dir=tmp_path)
    sleeping = load_engine(tiny_model_file, engine="onnx", cache_dir=tmp_path, spin_wait=False)

    def allow_spinning(eng):
        return eng.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")

    assert allow_spinning(sleeping) == "0"
    with pytest.raises(Exception):  # never set: onnxruntime's default (spin) applies
        allow_spinning(spinning)
    # no memory-pattern planning: a third less peak memory at batch 512, same speed
    assert not spinning.session.get_session_options().enable_mem_pattern
    x = np.random.default_rng(0).integers(0, 256, (5, 3, 64, 64), np.uint8)
    np.testing.assert_array_equal(spinning.score(x), sleeping.score(x))

    import clearface.predict as predict_module
    asked = []
    real = predict_module.load_engine
    monkeypatch.setattr(predict_module, "load_engine", lambda *a, **k: asked.append(k) or real(*a, **k))
    from conftest import jpeg_bytes, write_zip
    z = write_zip(tmp_path / "d.zip", [jpeg_bytes(np.full((64, 64, 3), v, np.uint8)) for v in (0, 99)])
    predict_module.predict(tiny_model_file, z, tmp_path / "labels.txt", engine="onnx", cache_dir=tmp_path)
    assert asked and asked[0].get("spin_wait") is False
