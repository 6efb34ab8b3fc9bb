"""``capsnet``: a compact capsule network with dynamic routing (Sabour, Frosst & Hinton, 2017),
sized for 64 px inputs on a 2-core CPU.

Layout (defaults)::

    64 px -> conv 5x5/2 (64) -> BN -> ReLU          32 px
          -> conv 3x3/2 (128) -> BN -> ReLU         16 px
          -> primary capsules: conv 3x3/2 -> 16 capsule maps x 8-D, squashed
                                                     8 x 8 x 16 = 1024 primary capsules
          -> 2 class capsules (16-D), 3 iterations of routing-by-agreement

The paper's 9x9 stride-1 conv on 28 px MNIST does not scale to 64 px RGB on a CPU; a two-conv
stride-2 stem (5x5 then 3x3) gives the primary capsules a comparable receptive field for a
fraction of the cost: a training step runs at roughly 100-230 images/s (batch 128, 2 threads).

Output. The length of class capsule ``k`` is the probability-like evidence for class ``k``.
``forward`` returns one score per image usable as a logit::

    logit = (||v_1|| - ||v_0||) * scale          # in (-scale, scale); scale = 10 by default

so that ``sigmoid(logit)`` spreads over (0, 1) and thresholding at 0 means "v_1 is longer".
It also keeps the lengths of the last batch in ``self.last_lengths`` (N, 2), and
``training_loss(targets)`` computes the paper's margin loss on them: training code should call
``model.training_loss(y)`` right after ``logits = model(x)`` instead of BCE-with-logits.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ClearfaceError
from ._api import register_model


def squash(s: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """Shrink vector lengths into [0, 1) keeping direction: |s|^2/(1+|s|^2) * s/|s|."""
    sq = (s * s).sum(dim=dim, keepdim=True)
    return s * (sq / (1.0 + sq)) / torch.sqrt(sq + eps)


def margin_loss(lengths: torch.Tensor, targets: torch.Tensor, m_pos: float = 0.9, m_neg: float = 0.1,
                lam: float = 0.5) -> torch.Tensor:
    """Capsule margin loss, averaged over the batch.

    ``lengths``: (N, 2) class-capsule lengths (column 1 = clean face). ``targets``: (N,) labels
    in {0, 1} (floats in [0, 1], e.g. smoothed labels, weight the two terms). Per image:
    ``sum_k T_k max(0, m_pos - |v_k|)^2 + lam (1 - T_k) max(0, |v_k| - m_neg)^2``.
    """
    if lengths.ndim != 2 or lengths.shape[1] != 2:
        raise ValueError(f"lengths must have shape (N, 2), got {tuple(lengths.shape)}")
    t1 = targets.reshape(-1).to(lengths.dtype)
    if t1.shape[0] != lengths.shape[0]:
        raise ValueError(f"{t1.shape[0]} targets for {lengths.shape[0]} capsule lengths")
    t = torch.stack([1.0 - t1, t1], dim=1)
    pos = torch.clamp(m_pos - lengths, min=0.0) ** 2
    neg = torch.clamp(lengths - m_neg, min=0.0) ** 2
    return (t * pos + lam * (1.0 - t) * neg).sum(dim=1).mean()


class CapsNet(nn.Module):
    num_classes = 2

    def __init__(self, channels=(64, 128), primary_caps: int = 16, primary_dim: int = 8, class_dim: int = 16,
                 routing_iters: int = 3, scale: float = 10.0, image_size: int = 64,
                 m_pos: float = 0.9, m_neg: float = 0.1, lam: float = 0.5):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 1:
            raise ClearfaceError("capsnet: channels must list at least one stem width")
        if routing_iters < 1:
            raise ClearfaceError(f"capsnet: routing_iters must be >= 1, got {routing_iters}")
        stem, cin = [], 3
        for cout in channels:
            k = 5 if not stem else 3  # 5x5 on the image, 3x3 after
            stem += [nn.Conv2d(cin, cout, k, 2, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.stem = nn.Sequential(*stem)
        self.primary_caps, self.primary_dim, self.class_dim = int(primary_caps), int(primary_dim), int(class_dim)
        self.primary = nn.Conv2d(cin, self.primary_caps * self.primary_dim, 3, 2, 1)
        side = image_size
        for _ in range(len(channels) + 1):
            side = (side + 1) // 2
        self.grid = side
        self.num_primary = self.primary_caps * side * side
        # One transformation matrix per (primary capsule, class capsule) pair, as in the paper.
        self.W = nn.Parameter(0.05 * torch.randn(self.num_primary, self.num_classes, self.class_dim, self.primary_dim))
        self.routing_iters = int(routing_iters)
        self.scale = float(scale)
        self.m_pos, self.m_neg, self.lam = float(m_pos), float(m_neg), float(lam)
        self.last_lengths: torch.Tensor | None = None

    def capsules(self, x: torch.Tensor) -> torch.Tensor:
        """The class capsules ``v``, shape (N, 2, class_dim)."""
        n = x.shape[0]
        h = self.primary(self.stem(x))  # (N, caps*dim, g, g)
        if h.shape[-1] != self.grid or h.shape[-2] != self.grid:
            raise ClearfaceError(
                f"capsnet was built for {self.grid}x{self.grid} primary grids (image_size), "
                f"got input {tuple(x.shape[-2:])}"
            )
        u = h.view(n, self.primary_caps, self.primary_dim, self.grid * self.grid)
        u = squash(u.permute(0, 1, 3, 2).reshape(n, self.num_primary, self.primary_dim))  # (N, P, 8)
        # Predictions u_hat[n, k, p] = W[p, k] @ u[n, p]  -> (N, 2, P, 16)
        u_hat = torch.einsum("pkdi,npi->nkpd", self.W, u)
        # Intermediate routing iterations only pick the coupling coefficients: as in common
        # implementations they see a detached u_hat, so the backward pass runs through the
        # final iteration only (about half the routing cost, same forward result).
        u_hat_routing = u_hat.detach()
        b = torch.zeros(n, self.num_classes, 1, self.num_primary, device=x.device, dtype=u_hat.dtype)
        for it in range(self.routing_iters):
            c = torch.softmax(b, dim=1)  # each primary capsule splits its vote over the classes
            if it == self.routing_iters - 1:
                v = squash(torch.matmul(c, u_hat).squeeze(2))  # (N, 2, 16)
            else:
                v = squash(torch.matmul(c, u_hat_routing).squeeze(2))
                b = b + torch.matmul(v.unsqueeze(2), u_hat_routing.transpose(2, 3))  # agreement (N, 2, 1, P)
        return v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lengths = self.capsules(x).norm(dim=-1)  # (N, 2), each in [0, 1)
        self.last_lengths = lengths
        return (lengths[:, 1] - lengths[:, 0]) * self.scale

    def __getstate__(self):
        # The last lengths carry an autograd graph: deepcopy/pickle (EMA copies, torch.save of
        # the module) would fail on them, and they are only meaningful right after forward.
        state = self.__dict__.copy()
        state["last_lengths"] = None
        return state

    def training_loss(self, targets: torch.Tensor) -> torch.Tensor:
        """Margin loss on the capsule lengths of the last ``forward`` (call it right after)."""
        if self.last_lengths is None:
            raise RuntimeError("capsnet.training_loss called before forward")
        return margin_loss(self.last_lengths, targets.to(self.last_lengths.device),
                           self.m_pos, self.m_neg, self.lam)


@register_model()
def capsnet(channels=(64, 128), primary_caps: int = 16, primary_dim: int = 8, class_dim: int = 16,
            routing_iters: int = 3, scale: float = 10.0) -> nn.Module:
    """Capsule network, dynamic routing (Sabour 2017), 2-conv stem; logit=(|v1|-|v0|)*scale."""
    return CapsNet(channels, primary_caps, primary_dim, class_dim, routing_iters, scale)
