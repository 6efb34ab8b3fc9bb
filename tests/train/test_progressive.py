"""Progressive resizing (``train_sizes``): each epoch trains at its size; validation and the model file don't."""

import numpy as np
import pytest

from clearface.errors import ClearfaceError
from clearface.settings import resolve


@pytest.mark.parametrize("value, match", [
    ([64, 0], r"train.sizes: must be a list of whole sizes"),
    ([64.5], r"train.sizes: must be a list of whole sizes"),
    ([], r"train.sizes: must be a list of whole sizes"),
    ("96", r"train.sizes: must be a list of whole sizes"),
    ([True], r"train.sizes: must be a list of whole sizes"),
])
def test_bad_sizes_are_one_line(value, match):
    with pytest.raises(ClearfaceError, match=match):
        resolve(overrides={"train_sizes": value})


def test_a_model_without_input_size_is_refused():
    with pytest.raises(ClearfaceError, match="train.sizes: model 'cfnet_tiny' has no input_size"):
        resolve(overrides={"model": "cfnet_tiny", "train_sizes": [48, 64]})
    assert resolve(overrides={"train_sizes": [64, 96]})["train_sizes"] == [64, 96]


@pytest.mark.slow
def test_each_epoch_trains_at_its_size_and_scores_at_the_full_size(real_small, tmp_path, monkeypatch):
    import clearface.models.mobilenet as mobilenet
    from clearface.modelfile import load_model_file
    from clearface.rundir import RunDir
    from clearface.train.run import train

    seen = []
    real_resized = mobilenet.resized

    def spy(x, size):
        seen.append((spy.net.training, size))
        return real_resized(x, size)

    real_forward = mobilenet.MobileNetV2Binary.forward

    def forward(self, x):
        spy.net = self
        return real_forward(self, x)

    monkeypatch.setattr(mobilenet, "resized", spy)
    monkeypatch.setattr(mobilenet.MobileNetV2Binary, "forward", forward)
    zpath, lpath, _ = real_small
    cfg = resolve(overrides={"model": "mobilenet_v2", "model_kwargs": {"pretrained": False, "input_size": 48},
                             "train_sizes": [32, 40], "epochs": 3, "batch_size": 64, "holdout": 80,
                             "val_fraction": 0.3, "progress_bar": False, "track_holdout": False, "tta": "none"})
    train(zpath, lpath, tmp_path / "out", cfg)

    train_sizes = [size for training, size in seen if training]
    steps = len(train_sizes) // 3  # the same number of steps every epoch; the last listed size repeats
    assert steps >= 1 and train_sizes == [32] * steps + [40] * steps + [40] * steps
    assert {size for training, size in seen if not training} == {48}
    rows = RunDir(tmp_path / "out").read_summary()
    assert np.array_equal(rows["train_size"], [32, 40, 40])
    blob = load_model_file(tmp_path / "out" / "model.pt")
    assert blob["members"][0]["model_kwargs"]["input_size"] == 48
