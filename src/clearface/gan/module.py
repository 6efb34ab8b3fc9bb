"""The GAN's LightningModule: alternating hinge-loss updates of D and G, and a sample grid per epoch.

Manual optimisation (two optimisers, one D step then one G step per batch). A batch's noise comes
from the global generator, reseeded per ``(seed, epoch, batch)`` exactly as the classifier's
augmentation is, so a run resumed from its last checkpoint draws what an uninterrupted one would.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from ..data.augment import AugmentConfig, augment_batch
from ..train.checkpoints import batch_seed
from ..train.module import epoch_mean
from .nets import Discriminator, Generator

GRID_PER_CLASS = 8
# DiffAugment (Zhao et al. 2020): the same random, differentiable shift/flip/colour/cutout on real and
# fake images before D, the usual guard against D memorising a small set (~1,700 minority faces here).
# Its effect on its own was not measured here.
DIFF_AUGMENT = AugmentConfig(flip=True, translate=0.125, scale=(1.0, 1.0), rotate=0.0, brightness=0.3,
                             contrast=0.3, saturation=0.3, grayscale=0.0, erase=0.5)


def to_unit(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1], the generator's output range."""
    return x_uint8.float().div(127.5).sub(1)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """The generator's [-1, 1] output -> uint8 images, the classifier's input format."""
    return x.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)


class GANModule(L.LightningModule):
    def __init__(self, z_dim: int = 64, ngf: int = 32, ndf: int = 32, lr: float = 1e-4, d_lr_factor: float = 4.0,
                 betas: tuple = (0.5, 0.999), mode_seeking: float = 1.0, seed: int = 0):
        """``d_lr_factor``: D learns this many times faster than G (TTUR, Heusel et al. 2017), a common
        setting for spectral-norm hinge GANs. ``mode_seeking``: weight of the mode-seeking term (Mao et
        al. 2019, MSGAN), which rewards G for giving two noises of one class different faces. Without it
        all six runs here (three optimiser settings, with and without DiffAugment and the minibatch-std
        feature) put out about one face per class within two epochs (sample diversity 0.02-0.05, real faces
        0.57); with it, 0.39 after two epochs. See docs/gan.md."""
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = Generator(z_dim, ngf, n_classes=2)
        self.discriminator = Discriminator(ndf, n_classes=2)
        self.seed = int(seed)
        # Fixed noise for the per-epoch grid: the same faces evolve across epochs.
        g = torch.Generator().manual_seed(self.seed)
        self.register_buffer("grid_z", torch.randn(2 * GRID_PER_CLASS, z_dim, generator=g), persistent=False)
        self.register_buffer("grid_y", torch.arange(2).repeat_interleave(GRID_PER_CLASS), persistent=False)
        self._losses: dict[str, list] = {"d_loss": [], "g_loss": []}

    def on_train_epoch_start(self):
        self._losses = {"d_loss": [], "g_loss": []}

    def on_train_batch_start(self, batch, batch_idx):
        torch.manual_seed(batch_seed(self.seed, self.current_epoch, batch_idx, self.global_rank))

    def judge(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """D's scores of DiffAugmented images (x in [-1, 1]); the augmentation is differentiable, so G
        learns through it."""
        return self.discriminator(augment_batch(x.add(1).div(2), DIFF_AUGMENT).mul(2).sub(1), y)

    def training_step(self, batch, batch_idx):
        x_uint8, y, _ = batch
        real, y = to_unit(x_uint8), y.long()
        opt_g, opt_d = self.optimizers()
        z = torch.randn(len(y), self.hparams.z_dim, device=real.device)
        fake = self.generator(z, y)

        d_loss = F.relu(1 - self.judge(real, y)).mean() + F.relu(1 + self.judge(fake.detach(), y)).mean()
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()

        g_loss = -self.judge(fake, y).mean()
        if self.hparams.mode_seeking:
            z2 = torch.randn_like(z)
            ratio = (fake - self.generator(z2, y)).abs().mean() / (z - z2).abs().mean()
            g_loss = g_loss + self.hparams.mode_seeking / (ratio + 1e-5)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        opt_g.step()

        self._losses["d_loss"].append(d_loss.detach())
        self._losses["g_loss"].append(g_loss.detach())
        self.log_dict({"d_loss": d_loss, "g_loss": g_loss}, prog_bar=True, on_step=True, on_epoch=False)

    @torch.no_grad()
    def sample_grid(self) -> torch.Tensor:
        """One row per class (0 on top) of the fixed-noise samples, as a [0, 1] image grid."""
        from torchvision.utils import make_grid
        was_training = self.generator.training
        self.generator.eval()
        x = self.generator(self.grid_z, self.grid_y)
        self.generator.train(was_training)
        return make_grid(x, nrow=GRID_PER_CLASS, normalize=True, value_range=(-1, 1))

    @torch.no_grad()
    def sample_diversity(self, n: int = 64) -> float:
        """Mean per-pixel std over ``n`` class-0 samples (fixed noise): near 0 means mode collapse
        (real class-0 faces: about 0.57)."""
        was_training = self.generator.training
        self.generator.eval()
        g = torch.Generator().manual_seed(self.seed + 1)
        z = torch.randn(n, self.hparams.z_dim, generator=g).to(self.grid_z.device)
        x = self.generator(z, torch.zeros(n, dtype=torch.long, device=z.device))
        self.generator.train(was_training)
        return float(x.std(0).mean())

    def on_train_epoch_end(self):
        for k, v in self._losses.items():
            self.log(f"epoch_{k}", epoch_mean(v))
        self.log("sample_diversity", self.sample_diversity())
        if self.logger is not None and hasattr(self.logger.experiment, "add_image"):
            self.logger.experiment.add_image("samples (top: class 0, bottom: class 1)", self.sample_grid(),
                                             self.current_epoch)

    def configure_optimizers(self):
        h = self.hparams
        betas = tuple(h.betas)
        return (torch.optim.Adam(self.generator.parameters(), lr=h.lr, betas=betas),
                torch.optim.Adam(self.discriminator.parameters(), lr=h.lr * h.d_lr_factor, betas=betas))
