"""``scripts/remote_data.py``: a run's training and validation images travel to a GPU machine in mosaics, its
held-out images stay here, and the rebuilt zip gives ``clearface train --resume`` the same parts by position."""

import importlib.util
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def _script(monkeypatch):
    spec = importlib.util.spec_from_file_location("remote_data", ROOT / "scripts" / "remote_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "PER_MOSAIC", 64)  # several mosaics, the last one partly filled
    monkeypatch.setattr(mod, "COLUMNS", 8)
    return mod


def test_packed_images_come_back_in_place_and_held_out_ones_never_leave(small_run, tmp_path, monkeypatch):
    from clearface.data import load_labelled
    from clearface.rundir import RunDir
    remote = _script(monkeypatch)
    zpath, lpath, run, s, y, parts = small_run
    packed = tmp_path / "packed"
    remote.pack(str(zpath), str(lpath), str(RunDir(run).split_path), str(packed))
    mosaics = sorted(packed.glob("mosaic_*.jpg"))
    assert len(mosaics) == -(-int((parts != "test").sum()) // 64) > 1
    # the mosaics may travel in separate folders (several transfers)
    second = tmp_path / "second"
    second.mkdir()
    for m in mosaics[::2]:
        shutil.move(m, second / m.name)

    out = tmp_path / "remote.zip"
    remote.unpack([str(packed), str(second)], str(out))
    with zipfile.ZipFile(out) as z:
        assert z.namelist() == s.names  # same names, same order: the run's split.csv fits by position
    back, y_back = load_labelled(out, lpath)
    assert np.array_equal(y_back, y)
    kept = parts != "test"
    diff = back.images[kept].astype(np.float64) - s.images[kept].astype(np.float64)
    mse = (diff ** 2).mean(axis=(1, 2, 3))
    assert 10 * np.log10(255 ** 2 / mse.mean()) > 38  # re-encoded twice (mosaic q75, then q95): ~41 dB
    assert 10 * np.log10(255 ** 2 / mse.max()) > 28  # and each image is itself (a swapped tile: ~10-15 dB)
    held_out = back.images[~kept]
    assert (held_out.max(axis=(1, 2, 3)) - held_out.min(axis=(1, 2, 3)) <= 2).all()  # flat grey placeholders


def test_collect_returns_float16_models_and_logs_without_the_split(tmp_path, monkeypatch):
    from clearface.modelfile import load_model_file, make_model_file, save_model_file
    from clearface.models import IMAGENET_MEAN, IMAGENET_STD, get_model
    remote = _script(monkeypatch)
    runs = tmp_path / "runs"
    for name in ("a", "b"):
        (runs / name).mkdir(parents=True)
        member = {"model": "cfnet_tiny", "model_kwargs": {}, "build_kwargs": {},
                  "state_dict": get_model("cfnet_tiny").state_dict()}
        save_model_file(make_model_file([member], IMAGENET_MEAN, IMAGENET_STD, "none", 0.5, "min_hter", "t", {}, {}),
                        runs / name / "model.pt")
        (runs / name / "train.log").write_text("log\n")
        (runs / name / "split.csv").write_text("index,name,label,part\n")
    (runs / "unfinished").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    remote.collect(str(runs), str(out), per_file=1)
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar", "models_0.tar", "models_1.tar"]
    with tarfile.open(out / "models_1.tar") as tar:
        assert tar.getnames() == ["b.pt"]
        tar.extractall(tmp_path / "x", filter="data")
    state = load_model_file(tmp_path / "x" / "b.pt")["members"][0]["state_dict"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    with tarfile.open(out / "logs.tar") as tar:
        assert sorted(tar.getnames()) == ["a/train.log", "b/train.log"]
