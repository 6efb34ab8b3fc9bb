"""Grad-CAM (clearface.explain.gradcam): on a real model file and on a net whose evidence is known."""

from types import SimpleNamespace

import numpy as np
import pytest


def _scorer_of(net):
    import torch
    return SimpleNamespace(members=[net], mean=torch.zeros(1, 3, 1, 1), std=torch.ones(1, 3, 1, 1))


def test_gradcam_on_the_model(tiny_model_file, real_small):
    from clearface.data import load_images
    from clearface.engines import build_scorer
    from clearface.explain.gradcam import GradCAM, find_target_layer, overlay
    from clearface.modelfile import load_model_file

    scorer = build_scorer(load_model_file(tiny_model_file))
    name, layer = find_target_layer(scorer.members[0])
    assert name == "features"  # cfnet: the last conv stage, not the last block's 1x1 skip conv
    imgs = np.ascontiguousarray(load_images(real_small[0], use_cache=False).images[:6])
    cam = GradCAM(scorer)
    maps = cam(imgs)
    assert maps.shape == (6, 64, 64) and maps.dtype == np.float32
    assert np.all(maps >= 0) and np.all(maps <= 1) and np.isfinite(maps).all()
    assert cam.gradients is not None and float(cam.gradients.abs().sum()) > 0, "no gradient reached the layer"
    assert cam.activations.shape[0] == 6 and cam.activations.shape[-2:] == (4, 4)
    assert maps.reshape(6, -1).max(1).max() == pytest.approx(1.0)
    # Both explained directions work; the weights are left without gradients.
    assert cam(imgs, target=np.zeros(6)).shape == (6, 64, 64)
    assert all(p.grad is None for p in scorer.parameters())
    img = overlay(imgs[0], maps[0], size=128, alpha=0.45)
    assert img.size == (128, 128) and img.mode == "RGB"


def test_gradcam_finds_the_evidence():
    """A net whose logit is the mean brightness: the map must light up where the image is bright."""
    import torch
    from torch import nn

    from clearface.explain.gradcam import GradCAM

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 2, 4, stride=4, bias=False))  # 16x16 map
            with torch.no_grad():
                self.features[0].weight.fill_(1.0 / 48)
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            return self.pool(self.features(x)).flatten(1).sum(1) - 0.1

    img = np.zeros((1, 3, 64, 64), np.uint8)
    img[:, :, 8:24, 40:56] = 255  # bright patch top right
    maps = GradCAM(_scorer_of(Net()))(img, target=[1])
    m = maps[0]
    assert m[16, 48] == pytest.approx(1.0, abs=0.05)
    assert m[48, 16] == pytest.approx(0.0, abs=1e-6)
    assert m[8:24, 40:56].mean() > 10 * m[32:, :32].mean() + 0.1
