"""``cfnet``: the default model, a small residual CNN designed for 64 px faces on a 2-core CPU.

A stride-2 stem takes the image straight to 32 px (the occluders — glasses, hat brims, beards —
are several pixels wide, so nothing useful is lost), then four residual stages halve the
resolution and double the width. Global average pooling keeps it indifferent to where the
face sits in the frame.
"""

from __future__ import annotations

import torch
from torch import nn

from ._api import register_model


def conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (
            nn.Identity() if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )
        nn.init.zeros_(self.conv2[1].weight)  # each block starts as identity: stabler early training
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.conv2(self.conv1(x)) + self.skip(x))


class CFNet(nn.Module):
    def __init__(self, width: int = 32, depths=(1, 1, 2, 1), dropout: float = 0.1):
        super().__init__()
        self.stem = conv_bn(3, width, stride=2)
        layers, cin = [], width
        for i, depth in enumerate(depths):
            cout = width * 2**i
            for j in range(depth):
                layers.append(_Block(cin, cout, 2 if (j == 0 and i > 0) else 1))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.stem(x))).squeeze(1)


@register_model()
def cfnet(width: int = 32, depths=(1, 1, 2, 1), dropout: float = 0.1) -> nn.Module:
    """Default: residual CNN for 64 px on 2 CPU cores (stride-2 stem, 4 stages)."""
    return CFNet(width, tuple(depths), dropout)


@register_model()
def cfnet_tiny(width: int = 8, depths=(1, 1, 1, 1), dropout: float = 0.0) -> nn.Module:
    """A few thousand parameters: for tests and smoke runs."""
    return CFNet(width, tuple(depths), dropout)
