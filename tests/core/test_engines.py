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
