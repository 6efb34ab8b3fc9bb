"""The generator file: writing it, reading it back safely, and drawing labelled samples from it.

A generator file is self-describing and holds only tensors and plain data, so it is read with
``torch.load(weights_only=True)``: the architecture's keyword arguments, the weights, the class
``gan_oversample`` draws, the clearface version, and what it was trained on: the run folder, the
sha256 of its ``split.csv`` and the pixel hashes of every training image it saw. The hashes let
``train`` refuse a generator that saw any image the run validates or scores on.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import ClearfaceError

GENERATOR_FORMAT = "clearface-generator-1"
GENERATOR_FILE_NAME = "generator.pt"


def hashes_to_tensor(hashes: np.ndarray):
    import torch
    return torch.from_numpy(np.ascontiguousarray(np.asarray(hashes, np.uint64).view(np.int64)))


def make_generator_file(generator, minority_class: int, run, split_sha256: str, train_hashes: np.ndarray,
                        epochs_done: int) -> dict:
    from .. import __version__
    return {"format": GENERATOR_FORMAT, "clearface_version": __version__,
            "arch": {"z_dim": int(generator.z_dim), "ngf": int(generator.ngf), "n_classes": int(generator.n_classes)},
            "state_dict": {k: v.detach().cpu().clone() for k, v in generator.state_dict().items()},
            "generates": int(minority_class), "epochs_done": int(epochs_done),
            "trained_on": {"run": str(run), "split_sha256": split_sha256, "part": "train",
                           "n_images": int(len(train_hashes)), "pixel_hashes": hashes_to_tensor(train_hashes)}}


def save_generator_file(blob: dict, path) -> None:
    import torch

    from ..outputs import atomic_path
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_generator_file(path) -> dict:
    """The file's contents, checked; one-line ClearfaceError for a missing or foreign file."""
    import torch
    p = Path(path).expanduser()
    if not p.is_file():
        raise ClearfaceError(f"{p}: no such generator file (train one with `clearface gan`)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means the same thing to the user
        raise ClearfaceError(f"{p}: not a clearface generator file, refused ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != GENERATOR_FORMAT:
        raise ClearfaceError(f"{p}: not a clearface generator file (format is not {GENERATOR_FORMAT!r})")
    return blob


def build_generator(blob: dict):
    from .nets import Generator
    g = Generator(**blob["arch"])
    g.load_state_dict(blob["state_dict"])
    return g.eval()


def trained_on_hashes(blob: dict) -> np.ndarray:
    return blob["trained_on"]["pixel_hashes"].numpy().view(np.uint64)


def check_not_trained_on(blob: dict, scored_hashes: np.ndarray, path) -> None:
    """Refuse a generator that saw any image the run validates or scores on (by pixel hash)."""
    seen = np.isin(np.asarray(scored_hashes, np.uint64), trained_on_hashes(blob))
    if seen.any():
        raise ClearfaceError(f"{path}: this generator was trained on {int(seen.sum())} of this run's validation/"
                             "held-out images; train it on this run's split (`clearface gan --run`)")


def draw(generator, n: int, cls: int, seed: int | None = None):
    """``n`` uint8 images (``n x 3 x 64 x 64``) of class ``cls``; ``seed`` fixes the noise, else the
    global torch generator is used (the caller seeds it per batch)."""
    import torch

    from .module import to_uint8
    g = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    z = torch.randn(n, generator.z_dim, generator=g)
    with torch.no_grad():
        return to_uint8(generator(z, torch.full((n,), int(cls), dtype=torch.long)))


def require_generator(cfg: dict) -> dict:
    """gan_oversample's generator file, read before any data is: one line if it is not given or not one."""
    path = (cfg.get("gan") or {}).get("generator")
    if not path:
        raise ClearfaceError("imbalance gan_oversample needs a generator file: give --gan.generator PATH "
                             "(made by `clearface gan --run RUN`)")
    return load_generator_file(path)


def check_generator_for_run(cfg: dict, blob: dict, hashes: np.ndarray, parts: np.ndarray, labels: np.ndarray) -> None:
    """Once the split is known: one line if the generator makes another class than this run's minority,
    or saw an image this run validates or scores on."""
    from ..data.split import TRAIN
    path = cfg["gan"]["generator"]
    minority = int(np.bincount(np.asarray(labels)[parts == TRAIN].astype(np.int64), minlength=2).argmin())
    if blob["generates"] != minority:
        raise ClearfaceError(f"{path}: generates class {blob['generates']} but this run's minority class is {minority}")
    check_not_trained_on(blob, hashes[parts != TRAIN], path)


def fill_synthetic(gan: tuple, x_uint8, y, idx):
    """A training batch with its gan_oversample slots (negative ``idx``) filled with generated faces of
    the generator's class; the noise comes from the global torch generator, reseeded per batch."""
    slots = idx < 0
    n = int(slots.sum())
    if not n:
        return x_uint8, y
    generator, cls = gan
    x_uint8, y = x_uint8.clone(), y.clone()
    x_uint8[slots] = draw(generator, n, cls).to(x_uint8.device)
    y[slots] = float(cls)
    return x_uint8, y


def generator_for_training(blob: dict) -> tuple:
    """``(frozen generator, class)`` of a generator file's contents, as the training module draws from it.

    ``train`` reads the file once (``require_generator``), checks it against the split
    (``check_generator_for_run``) and builds from that same blob, so what was checked is what is used."""
    generator = build_generator(blob)
    generator.requires_grad_(False)
    return generator, int(blob["generates"])
