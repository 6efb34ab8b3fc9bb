"""Vision transformers from timm: ``vit_b16_seed`` (pretrained ViT-B/16, head only) and
``vit_small_64`` (a small ViT for 64 px, from scratch).

timm is imported inside the builders, so ``import clearface.models`` does not pay for it.

``vit_b16_seed`` resizes the 64 px input to 224 inside ``forward`` and, with pretrained weights,
trains only the new 1-logit head. Its registry entry declares mean = std = (0.5, 0.5, 0.5):
that is the normalisation every timm ``vit_base_patch16_224`` checkpoint was trained with
(not the ImageNet mean/std the torchvision models use).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ClearfaceError
from ._api import register_model
from .pretrained import apply_state, freeze_except, read_state_dict, resized, resolve_weights_path

VIT_MEAN = (0.5, 0.5, 0.5)
VIT_STD = (0.5, 0.5, 0.5)


class ViTB16Seed(nn.Module):
    input_size = 224

    def __init__(self, pretrained: bool = True, weights=None, freeze: bool | None = None):
        super().__init__()
        import timm  # lazy: slow to import

        # Resolve the weights before building 86M parameters for nothing.
        path = resolve_weights_path("vit_b16", weights, model_name="vit_b16_seed") if pretrained else None
        net = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=1)
        if path is not None:
            state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("head.")}
            try:  # timm's own adapter: other checkpoint layouts, resized position embeddings, ...
                from timm.models.vision_transformer import checkpoint_filter_fn

                state = checkpoint_filter_fn(state, net)
            except Exception as exc:
                raise ClearfaceError(f"weights file {path} is not a usable ViT-B/16 state dict: {exc}") from None
            apply_state(net, state, source=path, drop_prefixes=("head.",))
        self.net = net
        self.frozen = bool(pretrained) if freeze is None else bool(freeze)
        if self.frozen:
            freeze_except(self.net, ("head.",))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(resized(x, self.input_size)).squeeze(1)


class _Squeeze(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


@register_model(mean=VIT_MEAN, std=VIT_STD, tags=("pretrained",))
def vit_b16_seed(pretrained: bool = True, weights=None, freeze: bool | None = None) -> nn.Module:
    """timm ViT-B/16 (pretrained) at 224 px, 64 px input resized; trains only the head."""
    return ViTB16Seed(pretrained, weights, freeze)


@register_model()
def vit_small_64(embed_dim: int = 192, depth: int = 6, num_heads: int = 3, patch_size: int = 8) -> nn.Module:
    """Small ViT for native 64 px (8 px patches, 192-d, 6 blocks), from scratch."""
    from timm.models.vision_transformer import VisionTransformer  # lazy: slow to import

    if embed_dim % num_heads:
        raise ClearfaceError(f"vit_small_64: embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    if 64 % patch_size:
        raise ClearfaceError(f"vit_small_64: patch_size {patch_size} does not divide the 64 px input")
    net = VisionTransformer(img_size=64, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                            num_heads=num_heads, num_classes=1)
    return _Squeeze(net)
