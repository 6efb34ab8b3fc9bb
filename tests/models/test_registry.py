"""Every registered model (timm style: parametrised over ``list_models()``, not a hand-written list).

Adding a model to the registry adds it here: it must describe itself in one line, build without
downloading anything, map a normalised batch to one finite logit per image in training and in
evaluation mode, and survive the model-file round trip the shipped scorer uses.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from clearface.models import get_model, get_model_entry, list_models


def _offline_kwargs(name: str) -> dict:
    """What a model file stores as ``build_kwargs``: never look for pretrained weights."""
    params = inspect.signature(get_model_entry(name).builder).parameters
    return {**({"pretrained": False} if "pretrained" in params else {}), **({"weights": None} if "weights" in params else {})}


def test_registry_is_not_empty_and_sorted():
    names = list_models()
    assert "cfnet" in names and names == sorted(names)


@pytest.mark.parametrize("name", list_models())
def test_describes_itself_in_one_line(name):
    entry = get_model_entry(name)
    assert entry.name == name and entry.description and "\n" not in entry.description
    assert len(entry.mean) == len(entry.std) == 3 and all(s > 0 for s in entry.std)


@pytest.mark.parametrize("name", list_models())
def test_one_finite_logit_per_image(name):
    torch.manual_seed(0)
    model = get_model(name, **_offline_kwargs(name))
    x = torch.randn(2, 3, 64, 64)
    for training in (True, False):
        model.train(training)
        out = model(x)
        assert out.shape == (2,) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_model_file_round_trip_scores_alike(name):
    from clearface.engines import build_scorer
    from clearface.modelfile import make_model_file
    torch.manual_seed(0)
    entry, kwargs = get_model_entry(name), _offline_kwargs(name)
    net = get_model(name, **kwargs).eval()
    member = {"model": name, "model_kwargs": {}, "build_kwargs": kwargs, "state_dict": net.state_dict()}
    blob = make_model_file([member], entry.mean, entry.std, "none", 0.5, "min_hter", "test", {}, {})
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        expected = torch.sigmoid(net((x - torch.tensor(entry.mean).view(1, 3, 1, 1)) / torch.tensor(entry.std).view(1, 3, 1, 1)))
        assert torch.allclose(build_scorer(blob)(x), expected, atol=1e-5)
