"""Losses for an imbalanced binary task, all on logits (never on rounded predictions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce(logits, targets, pos_weight: float | None = None, label_smoothing: float = 0.0):
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + 0.5 * label_smoothing
    pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pw)


def focal(logits, targets, gamma: float = 2.0, label_smoothing: float = 0.0):
    """Focal loss (Lin et al. 2017): BCE scaled by (1 - p_true)^gamma, so easy images count less."""
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + 0.5 * label_smoothing
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_true = p * targets + (1 - p) * (1 - targets)
    return ((1 - p_true).pow(gamma) * ce).mean()


def soft_hter(logits, targets, temperature: float = 1.0):
    """Differentiable HTER: mean over class 0 of sigma(s/T) (soft FAR) + mean over class 1 of
    1 - sigma(s/T) (soft FRR), halved. A class absent from the batch contributes 0."""
    p = torch.sigmoid(logits / temperature)
    pos = targets >= 0.5
    neg = ~pos
    far = p[neg].mean() if neg.any() else p.new_zeros(())
    frr = (1 - p[pos]).mean() if pos.any() else p.new_zeros(())
    return (far + frr) / 2
