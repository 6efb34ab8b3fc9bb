"""Shared fixtures: small slices of the real data (copied into tmp, never into the repo) and tiny models."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TRAIN_ZIP = DATA / "train_img.zip"
TRAIN_LABELS = DATA / "label_train.txt"
VAL_ZIP = DATA / "val_img.zip"


def real_slice(n: int, start: int = 0) -> tuple[list[bytes], np.ndarray]:
    """The JPEG bytes and labels of images ``start+1 .. start+n`` of the real training set."""
    if not TRAIN_ZIP.exists():
        pytest.skip(f"{TRAIN_ZIP} not present")
    labels = np.array([int(v) for v in TRAIN_LABELS.read_text().split()], np.int8)[start:start + n]
    with zipfile.ZipFile(TRAIN_ZIP) as zf:
        blobs = [zf.read(f"train_img/{i:06d}.jpg") for i in range(start + 1, start + n + 1)]
    return blobs, labels


def write_zip(path: Path, blobs: list[bytes], folder: str = "img", names: list[str] | None = None) -> Path:
    names = names or [f"{folder}/{i:06d}.jpg" for i in range(1, len(blobs) + 1)]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, b in zip(names, blobs):
            zf.writestr(name, b)
    return path


def write_labels(path: Path, labels) -> Path:
    path.write_text("".join(f"{int(v)}\n" for v in labels))
    return path


def jpeg_bytes(arr_hwc: np.ndarray, fmt: str = "JPEG") -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr_hwc).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="session")
def real_small(tmp_path_factory):
    """A zip of the first 300 real images and their label file: ``(zip_path, labels_path, labels)``."""
    d = tmp_path_factory.mktemp("real_small")
    blobs, labels = real_slice(300)
    return write_zip(d / "small.zip", blobs, "train_img"), write_labels(d / "labels.txt", labels), labels


@pytest.fixture()
def small_run(real_small, tmp_path):
    """``real_small`` with a saved split (30 % val, 80 held out) in ``tmp_path/run``, as a training run leaves it."""
    from clearface.data import load_labelled
    from clearface.data.split import make_split
    from clearface.rundir import RunDir
    zpath, lpath, _ = real_small
    s, y = load_labelled(zpath, lpath)
    parts = make_split(y, s.hashes, val_fraction=0.3, holdout=80, seed=0)
    run = tmp_path / "run"
    run.mkdir()
    RunDir(run).write_split(s.names, y, parts)
    return zpath, lpath, run, s, y, parts


@pytest.fixture()
def datamodule_inputs(monkeypatch):
    """What a training run hands its data module, filled in when it builds one: ``train_idx``,
    ``val_idx`` and the float loss ``targets``/``val_targets`` the loaders will serve."""
    import clearface.data.datamodule as dm_module
    seen = {}
    real_init = dm_module.FaceDataModule.__init__

    def spy(self, images, labels, train_idx, val_idx, *args, **kwargs):
        real_init(self, images, labels, train_idx, val_idx, *args, **kwargs)
        seen.update(train_idx=train_idx, val_idx=val_idx, targets=self.train.labels.numpy().copy(),
                    val_targets=self.val.labels.numpy().copy())

    monkeypatch.setattr(dm_module.FaceDataModule, "__init__", spy)
    return seen


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Keep caches and ONNX exports of tests out of the user's cache folder."""
    monkeypatch.setenv("CLEARFACE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "clearface-cache"))


@pytest.fixture()
def cache_dir(tmp_path):
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory):
    """A model file of the tiny registry model with random weights (tau 0.5, TTA flip)."""
    import torch

    from clearface.settings import resolve
    from clearface.modelfile import make_model_file, save_model_file
    from clearface.models import IMAGENET_MEAN, IMAGENET_STD, get_model

    torch.manual_seed(0)
    net = get_model("cfnet_tiny")
    cfg = resolve(overrides={"model": "cfnet_tiny"})
    member = {"model": "cfnet_tiny", "model_kwargs": {}, "build_kwargs": {}, "state_dict": net.state_dict()}
    blob = make_model_file([member], IMAGENET_MEAN, IMAGENET_STD, "flip", 0.5, "min_hter", "test fixture", {}, cfg)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model_file(blob, path)
    return path


@pytest.fixture(autouse=True)
def _model_tests_on_two_threads(request):
    """Model tests run torch on 2 threads (the CI machine's cores), restored after.

    Kept here rather than in tests/models/conftest.py: test modules import helpers with
    `from conftest import ...`, and a second conftest.py would shadow this one."""
    if "models" not in request.node.path.parts:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)
