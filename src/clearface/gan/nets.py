"""The class-conditional DCGAN pair at 64x64: a generator and a projection discriminator.

G: a DCGAN up-sampling stack (4 -> 64 px) fed with the noise concatenated with a learned class
embedding. D: spectrally normalised strided convolutions (Miyato et al. 2018) with a projection
head (Miyato & Koyama 2018) for the class, trained with the hinge loss, plus the minibatch
standard-deviation feature (Karras et al. 2018) so D can see a batch of near-identical fakes. That
feature alone did not stop G from ignoring its noise here; the mode-seeking term in
:mod:`clearface.gan.module` did (docs/gan.md).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

IMAGE_SIZE = 64


class Generator(nn.Module):
    """``(noise N x z_dim, class N) -> images N x 3 x 64 x 64`` in [-1, 1]."""

    def __init__(self, z_dim: int = 64, ngf: int = 32, n_classes: int = 2):
        super().__init__()
        self.z_dim, self.ngf, self.n_classes = z_dim, ngf, n_classes
        self.embed = nn.Embedding(n_classes, z_dim)

        def up(c_in, c_out):
            return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]

        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * z_dim, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            *up(ngf * 8, ngf * 4), *up(ngf * 4, ngf * 2), *up(ngf * 2, ngf),  # 8, 16, 32 px
            nn.ConvTranspose2d(ngf, 3, 4, 2, 1), nn.Tanh())  # 64 px

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.embed(y)], dim=1)
        return self.net(h[:, :, None, None])


class Discriminator(nn.Module):
    """``(images in [-1, 1], class) -> N`` real-ness scores (unbounded: hinge loss)."""

    def __init__(self, ndf: int = 32, n_classes: int = 2):
        super().__init__()

        def down(c_in, c_out):
            return [spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1)), nn.LeakyReLU(0.2, True)]

        self.features = nn.Sequential(*down(3, ndf), *down(ndf, ndf * 2), *down(ndf * 2, ndf * 4),
                                      *down(ndf * 4, ndf * 8))  # 32, 16, 8, 4 px
        self.head = spectral_norm(nn.Linear(ndf * 8 + 1, 1))  # + the batch's feature spread
        self.project = spectral_norm(nn.Embedding(n_classes, ndf * 8))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        spread = f.std(0, unbiased=False).mean().expand(len(f), 1)  # near 0 for a collapsed fake batch
        h = f.sum(dim=(2, 3))
        return self.head(torch.cat([h, spread], 1)).squeeze(1) + (self.project(y) * h).sum(1)
