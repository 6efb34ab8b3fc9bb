"""``facenet_seed``: the shallow FaceNet-style stem (Szegedy/Schroff-style 7x7 conv, 1x1 reduce,
3x3 conv) followed by a 128-d embedding and a linear classifier.

conv 7x7/2 (64) -> BN -> ReLU -> max-pool 3/2 -> conv 1x1 (64) -> BN -> ReLU -> conv 3x3 (192)
-> BN -> ReLU -> max-pool 3/2 -> global average pool -> dropout -> Linear(192, 128) = embedding
-> Linear(128, 1) = logit. ``embed`` exposes the embedding (L2-normalised on request); ``forward``
classifies the embedding as ``embed`` returns it by default (so ``normalize_embedding=True``
also puts the classifier on the unit sphere).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._api import register_model
from .cfnet import conv_bn


class FaceNetSeed(nn.Module):
    embedding_dim = 128

    def __init__(self, dropout: float = 0.2, normalize_embedding: bool = False):
        super().__init__()
        self.normalize_embedding = bool(normalize_embedding)
        self.features = nn.Sequential(
            conv_bn(3, 64, 2, 7),
            nn.MaxPool2d(3, 2, padding=1),
            conv_bn(64, 64, k=1),
            conv_bn(64, 192, k=3),
            nn.MaxPool2d(3, 2, padding=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.dropout = nn.Dropout(dropout)
        self.embedding = nn.Linear(192, self.embedding_dim)
        self.classifier = nn.Linear(self.embedding_dim, 1)

    def embed(self, x: torch.Tensor, normalize: bool | None = None) -> torch.Tensor:
        """The (N, 128) embedding; L2-normalised when ``normalize`` (default: the ctor flag)."""
        e = self.embedding(self.dropout(self.features(x)))
        if self.normalize_embedding if normalize is None else normalize:
            e = F.normalize(e, p=2, dim=1)
        return e

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x)).squeeze(1)


@register_model()
def facenet_seed(dropout: float = 0.2, normalize_embedding: bool = False) -> nn.Module:
    """FaceNet-style shallow stem (7x7, 1x1, 3x3 convs) -> 128-d embedding -> linear logit."""
    return FaceNetSeed(dropout, normalize_embedding)
