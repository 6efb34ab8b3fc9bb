"""Augmentation applied to whole batches of tensors, not per image.

Per-sample PIL/torchvision transforms run one image at a time in Python and, with two intra-op
threads, cost more than the model step here; one affine ``grid_sample`` and a few broadcast
multiplies over the batch cost a few percent of it. Every random draw is per image.

Draws come from ``g`` or the global generator; training reseeds the global one before every batch
from ``(seed, epoch, batch)`` (:func:`clearface.train.checkpoints.batch_seed`), so a resumed run
augments each batch exactly as the uninterrupted run did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    flip: bool = True            # horizontal flip with p = 0.5
    translate: float = 0.06      # max shift, as a fraction of the side
    scale: tuple = (0.9, 1.12)   # zoom range (>1 zooms in), uniform in log-space
    rotate: float = 8.0          # max rotation, degrees
    brightness: float = 0.25     # multiplicative, 1 ± b
    contrast: float = 0.25       # blend with the image mean, 1 ± c
    saturation: float = 0.3      # blend with grey, 1 ± s
    grayscale: float = 0.05      # probability of a grey image
    erase: float = 0.0           # probability of one random erased rectangle
    lowres: float = 0.0          # probability of a down-sampled (16-48 px) and re-enlarged image: blur/low-res sources
    mixup: float = 0.0           # mixup alpha (0 = off); labels become soft

    @classmethod
    def from_dict(cls, d: dict | None) -> "AugmentConfig":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            from ..errors import ClearfaceError
            raise ClearfaceError(f"unknown augment option(s) {sorted(unknown)}; known: {sorted(known)}")
        if "scale" in d:
            d["scale"] = tuple(d["scale"])
        return cls(**d)


def _uniform(n, lo, hi, g, device):
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator | None = None) -> torch.Tensor:
    """``x``: float batch in [0, 1], ``(N, 3, H, W)``. Returns an augmented batch of the same shape."""
    n, device = x.shape[0], x.device
    if cfg.translate or cfg.rotate or cfg.scale != (1.0, 1.0) or cfg.flip:
        log_s = _uniform(n, math.log(cfg.scale[0]), math.log(cfg.scale[1]), g, device)
        inv_s = torch.exp(-log_s)  # the grid samples a smaller window to zoom in
        ang = _uniform(n, -cfg.rotate, cfg.rotate, g, device) * (math.pi / 180)
        flip = (torch.rand(n, generator=g, device=device) < 0.5).float() * 2 - 1 if cfg.flip else torch.ones(n, device=device)
        tx = _uniform(n, -cfg.translate, cfg.translate, g, device) * 2
        ty = _uniform(n, -cfg.translate, cfg.translate, g, device) * 2
        cos, sin = torch.cos(ang) * inv_s, torch.sin(ang) * inv_s
        theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        # 'border' repeats edge pixels instead of inventing black frames the test data never has.
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    shape = (n, 1, 1, 1)
    if cfg.lowres:
        # One size per batch keeps it a single interpolate; which images get it is per image.
        side = int(torch.randint(16, 49, (1,), generator=g, device=device))
        small = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        blurred = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
        m = (torch.rand(n, generator=g, device=device) < cfg.lowres).view(shape)
        x = torch.where(m, blurred, x)
    if cfg.brightness:
        x = x * _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, g, device).view(shape)
    if cfg.contrast:
        c = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, g, device).view(shape)
        x = (x - x.mean((1, 2, 3), keepdim=True)) * c + x.mean((1, 2, 3), keepdim=True)
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    if cfg.saturation:
        s = _uniform(n, 1 - cfg.saturation, 1 + cfg.saturation, g, device).view(shape)
        x = (x - grey) * s + grey
    if cfg.grayscale:
        m = (torch.rand(n, generator=g, device=device) < cfg.grayscale).view(shape)
        x = torch.where(m, grey.expand_as(x), x)
    if cfg.erase:
        h, w = x.shape[-2:]
        m = torch.rand(n, generator=g, device=device) < cfg.erase
        eh = (_uniform(n, 0.1, 0.3, g, device) * h).long()
        ew = (_uniform(n, 0.1, 0.3, g, device) * w).long()
        y0 = (torch.rand(n, generator=g, device=device) * (h - eh)).long()
        x0 = (torch.rand(n, generator=g, device=device) * (w - ew)).long()
        rows = torch.arange(h, device=device).view(1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, w)
        box = ((rows >= y0.view(-1, 1, 1)) & (rows < (y0 + eh).view(-1, 1, 1))
               & (cols >= x0.view(-1, 1, 1)) & (cols < (x0 + ew).view(-1, 1, 1)) & m.view(-1, 1, 1))
        x = torch.where(box.unsqueeze(1), torch.rand_like(x[:, :, :1, :1]), x)
    return x.clamp_(0, 1)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, g: torch.Generator | None = None):
    """Mix each image with a random partner; returns the mixed batch and soft labels."""
    lam = torch.distributions.Beta(alpha, alpha).sample((x.shape[0],)).to(x.device)
    lam = torch.maximum(lam, 1 - lam)  # keep the original image dominant
    perm = torch.randperm(x.shape[0], generator=g, device=x.device)
    xm = x * lam.view(-1, 1, 1, 1) + x[perm] * (1 - lam.view(-1, 1, 1, 1))
    return xm, y * lam + y[perm] * (1 - lam)
