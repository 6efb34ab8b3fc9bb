"""``resnet50_seed``: torchvision ResNet-50 on ImageNet weights, fine-tuning only ``layer4`` and a new head.

The 64 px input is resized inside ``forward`` to ``input_size`` (bilinear, no antialiasing), so
the data pipeline stays 64 px for every model. ``fc`` becomes Linear(2048, 256) -> ReLU ->
Linear(256, 1). With pretrained weights everything but ``layer4`` and ``fc`` is frozen
(``requires_grad=False``) and the frozen batch-norm layers stay in eval mode while training, so
their ImageNet running statistics are kept. ``pretrained=False`` trains the whole network from
scratch (freezing random layers would only hurt); ``freeze`` overrides either default.
"""

from __future__ import annotations

import torch
from torch import nn

from ._api import IMAGENET_MEAN, IMAGENET_STD, register_model
from ..errors import ClearfaceError
from .pretrained import freeze_except, frozen_norms_to_eval, load_pretrained_backbone, resized

TRAINABLE = ("layer4.", "fc.")


class ResNet50Seed(nn.Module):
    def __init__(self, input_size: int = 224, pretrained: bool = True, weights=None, freeze: bool | None = None):
        super().__init__()
        from torchvision.models import resnet50  # lazy: keeps `import clearface.models` light

        if int(input_size) < 32:
            raise ClearfaceError(f"resnet50_seed: input_size must be at least 32, got {input_size}")
        self.input_size = int(input_size)
        net = resnet50(weights=None)
        net.fc = nn.Sequential(nn.Linear(2048, 256), nn.ReLU(inplace=True), nn.Linear(256, 1))
        if pretrained:
            load_pretrained_backbone(net, "resnet50", weights, "resnet50_seed", "fc.")
        self.net = net
        self.frozen = bool(pretrained) if freeze is None else bool(freeze)
        if self.frozen:
            freeze_except(self.net, TRAINABLE)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.frozen:
            frozen_norms_to_eval(self.net)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(resized(x, self.input_size)).squeeze(1)


@register_model(mean=IMAGENET_MEAN, std=IMAGENET_STD, tags=("pretrained",))
def resnet50_seed(input_size: int = 224, pretrained: bool = True, weights=None, freeze: bool | None = None) -> nn.Module:
    """ResNet-50 (ImageNet) resized to input_size; trains layer4 + 2048-256-1 head only."""
    return ResNet50Seed(input_size, pretrained, weights, freeze)
