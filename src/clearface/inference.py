"""Model files and scoring: the one path from uint8 images to scores and 0/1 labels.

A model file (``torch.save`` of plain data, loadable with ``weights_only=True``) holds one or
more members (ensembles), the preprocessing, the test-time augmentation, the class meaning and
the threshold tau chosen on validation data. :class:`Scorer` turns that into one ``nn.Module``
mapping a float batch in [0, 1] to class-1 probabilities; the same module is used to calibrate
tau after training, to predict, and to export to ONNX, so all three agree.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import numpy as np

from .errors import ClearfaceError

FORMAT = "clearface-model"
FORMAT_VERSION = 1
CLASSES = {"0": "occluded face (glasses, hat, cap, bandana or facial hair)", "1": "clean face"}


PACKAGED = {"default": "clearface_default.pt", "ensemble": "clearface_ensemble.pt"}


def packaged_model_path(name: str = "default") -> Path | None:
    """A model shipped inside the package (``default``: fast single model; ``ensemble``: most
    accurate, about half the speed), if this build has it."""
    p = Path(__file__).parent / "weights" / PACKAGED[name]
    return p if p.exists() else None


def resolve_model_path(model) -> Path:
    """``--model``: a file or run folder; ``default``/``ensemble`` (packaged, unless such a path
    exists); None -> the packaged default."""
    if model:
        p = Path(model).expanduser()
        if str(model) in PACKAGED and not p.exists():
            packaged = packaged_model_path(str(model))
            if packaged is None:
                raise ClearfaceError(f"this build of clearface ships no {model!r} model")
            return packaged
        return p
    p = packaged_model_path()
    if p is None:
        raise ClearfaceError("no --model given and this build of clearface ships no trained model; "
                             "train one with `clearface train` and pass --model RUN_DIR/model.pt")
    return p


def model_file_path(model) -> Path:
    """The file behind ``--model``: a path, a run folder (its ``model.pt``), a packaged name, or
    None for the packaged default; it must exist."""
    p = resolve_model_path(model)
    if p.is_dir() and (p / "model.pt").exists():
        p = p / "model.pt"
    if not p.exists():
        raise ClearfaceError(f"{p}: no such model file")
    if p.is_dir():
        raise ClearfaceError(f"{p}: folder has no model.pt (give a model file or a run folder)")
    return p


def load_model_file(path) -> dict:
    p = model_file_path(path)
    import torch
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad pickle/zip
        raise ClearfaceError(f"{p}: not a readable clearface model file ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ClearfaceError(f"{p}: not a clearface model file (no '{FORMAT}' marker)")
    if blob.get("format_version", 0) > FORMAT_VERSION:
        raise ClearfaceError(f"{p}: made by a newer clearface (format {blob['format_version']}); upgrade clearface")
    blob["path"] = str(p)
    return blob


def make_model_file(members: list[dict], mean, std, tta: str, threshold: float, threshold_method: str,
                    threshold_source: str, metrics: dict, config: dict) -> dict:
    from . import __version__
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "clearface_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "members": members,  # [{"model": name, "model_kwargs": {...}, "state_dict": {...}}]
        "preprocess": {"size": 64, "mean": [float(v) for v in mean], "std": [float(v) for v in std],
                       "input": "RGB, CHW, uint8 scaled to [0, 1], then (x - mean) / std"},
        "tta": tta,
        "classes": CLASSES,
        "positive_class": 1,
        "score": "probability of class 1: sigmoid of the logit, averaged over TTA views and members",
        "threshold": float(threshold),
        "threshold_method": threshold_method,
        "threshold_source": threshold_source,
        "metrics": metrics,
        "config": config,
    }


def halve_weights(blob: dict) -> dict:
    """Store floating-point weights as float16: half the file size for packaging.

    Loading casts them back to float32 (``load_state_dict`` copies into the float32 parameters),
    so inference still computes in float32; only the stored weights are rounded (~1e-3 relative).
    """
    import torch
    members = []
    for spec in blob["members"]:
        sd = {k: (v.half() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in spec["state_dict"].items()}
        members.append(dict(spec, state_dict=sd))
    return dict(blob, members=members, weights_dtype="float16")


def save_model_file(blob: dict, path) -> None:
    import torch
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save({k: v for k, v in blob.items() if k != "path"}, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def build_scorer(blob: dict):
    """The model file as an ``nn.Module``: float ``(N, 3, 64, 64)`` in [0, 1] -> probabilities ``(N,)``."""
    import torch
    from torch import nn

    from .models import get_model

    class Scorer(nn.Module):
        def __init__(self, members, mean, std, tta):
            super().__init__()
            self.members = nn.ModuleList(members)
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
            self.tta = tta

        def forward(self, x):
            x = (x - self.mean) / self.std
            views = [x, torch.flip(x, dims=[3])] if self.tta == "flip" else [x]
            probs = [torch.sigmoid(m(v)) for m in self.members for v in views]
            return torch.stack(probs, 0).mean(0)

    members = []
    for i, spec in enumerate(blob["members"]):
        kwargs = dict(spec.get("model_kwargs") or {})
        kwargs.update(spec.get("build_kwargs") or {})  # e.g. pretrained=False: weights come from the file
        net = get_model(spec["model"], **kwargs)
        try:
            net.load_state_dict(spec["state_dict"])
        except RuntimeError as exc:
            raise ClearfaceError(f"{blob.get('path', 'model file')}: member {i} weights do not fit model "
                                 f"{spec['model']!r} ({str(exc).splitlines()[0][:200]})") from None
        members.append(net)
    pre = blob["preprocess"]
    return Scorer(members, pre["mean"], pre["std"], blob.get("tta", "none")).eval()


def score_array(scorer, images: np.ndarray, batch_size: int = 512, channels_last: bool = True) -> np.ndarray:
    """Class-1 probabilities of uint8 ``(N, 3, 64, 64)`` images, in order."""
    import torch
    out = np.empty(len(images), np.float32)
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).float().div_(255)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out[start:start + len(x)] = scorer(x).float().numpy()
    return out


def labels_from_scores(scores: np.ndarray, threshold: float) -> np.ndarray:
    return (np.asarray(scores) >= threshold).astype(np.int8)
