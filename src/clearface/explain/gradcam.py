"""Grad-CAM (Selvaraju et al. 2017) for clearface models, on a handful of images.

The map is computed on ensemble member 0 for the normalised, unflipped input it sees inside
the scorer of :func:`clearface.engines.build_scorer` (``(x - scorer.mean) / scorer.std``). A forward hook
on the target layer keeps its activation ``A`` and a tensor (backward) hook on that activation
catches ``dy/dA``; the channel weights are the spatial means of the gradient and the map is
``ReLU(sum_k w_k A_k)``, upsampled to 64 x 64 and scaled to [0, 1] per image.

Target layer: the last convolutional *stage* -- found generically by watching one forward
pass: the last module that contains a ``Conv2d`` and returns a spatial map (H, W >= 2). For
``cfnet`` that is ``features`` (the output of the last residual block, skip path included);
reading the last ``Conv2d`` in module order instead would pick that block's 1x1 skip
convolution. Falls back to the last ``Conv2d`` when nothing else fits.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from PIL import Image

from ..engines import unit_float
from ..errors import ClearfaceError

SIZE = 64


@contextmanager
def _one_thread():
    """A few images: one intra-op thread is fastest, and far faster on a CPU busy with other work."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def find_target_layer(net, size: int = SIZE):
    """``(name, module)``: the last conv-containing module whose output is still a spatial map."""
    import torch
    from torch import nn

    named = list(net.named_modules())
    convs = [(n, m) for n, m in named if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ClearfaceError(f"{type(net).__name__} has no Conv2d layer: Grad-CAM needs a convolutional model")
    with_conv = [(n, m) for n, m in named if n and any(isinstance(x, nn.Conv2d) for x in m.modules())]
    finished: list[tuple[str, object]] = []
    hooks = []
    for n, m in with_conv:
        def hook(mod, inp, out, n=n):
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-1] >= 2 and out.shape[-2] >= 2:
                finished.append((n, mod))
        hooks.append(m.register_forward_hook(hook))
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad(), _one_thread():
            net(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    if finished:
        return finished[-1]
    return convs[-1]


class GradCAM:
    """``GradCAM(scorer)(images)`` -> ``(N, 64, 64)`` float maps in [0, 1].

    ``images``: uint8 ``(N, 3, 64, 64)``. ``target``: per image 1 (evidence for "clean face",
    the logit) or 0 (evidence for "occluded", minus the logit); default: the member's own
    prediction (logit >= 0). After a call, ``activations``, ``gradients`` and ``logits`` hold
    the last batch's tensors (for inspection and tests).
    """

    def __init__(self, scorer, member: int = 0, layer=None):
        self.net = scorer.members[member]
        self.mean = scorer.mean
        self.std = scorer.std
        if layer is None:
            self.layer_name, self.layer = find_target_layer(self.net)
        else:
            name = next((n for n, m in self.net.named_modules() if m is layer), type(layer).__name__)
            self.layer_name, self.layer = name, layer
        self.activations = self.gradients = self.logits = None

    def __call__(self, images: np.ndarray, target=None) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        x = unit_float(images)
        xn = ((x - self.mean) / self.std).requires_grad_(True)  # so gradients flow even with frozen weights
        store: dict = {}

        def forward_hook(mod, inp, out):
            store["act"] = out
            out.register_hook(lambda g: store.__setitem__("grad", g))

        handle = self.layer.register_forward_hook(forward_hook)
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.enable_grad(), _one_thread():
                logits = self.net(xn).reshape(-1)
                if target is None:
                    sign = torch.where(logits.detach() >= 0, 1.0, -1.0)
                else:
                    t = torch.as_tensor(np.broadcast_to(np.asarray(target), (len(logits),)).copy())
                    sign = torch.where(t >= 1, 1.0, -1.0)
                (logits * sign).sum().backward()
        finally:
            handle.remove()
            self.net.train(was_training)
            self.net.zero_grad(set_to_none=True)
        if "act" not in store or "grad" not in store:
            raise ClearfaceError(f"Grad-CAM: layer {self.layer_name} got no activation or gradient")
        act, grad = store["act"].detach(), store["grad"].detach()
        store.clear()  # activation -> hook -> store -> activation: a cycle the GC cannot free (0.3 MB a call)
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * act).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
        cam = (cam / peak).clamp_(0, 1)
        self.activations, self.gradients, self.logits = act, grad, logits.detach()
        return cam.numpy().astype(np.float32)


def overlay(image_chw: np.ndarray, cam: np.ndarray, size: int = 128, alpha: float = 0.45) -> Image.Image:
    """The 64 px image upscaled to ``size`` with the map in the 'jet' colormap blended on top."""
    from matplotlib import colormaps

    base = Image.fromarray(np.ascontiguousarray(image_chw.transpose(1, 2, 0))).resize((size, size), Image.BICUBIC)
    heat_small = Image.fromarray(np.clip(cam * 255, 0, 255).astype(np.uint8))
    heat = np.asarray(heat_small.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255
    rgb = colormaps["jet"](heat)[..., :3] * 255
    out = (1 - alpha) * np.asarray(base, dtype=np.float32) + alpha * rgb
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))
