"""Checkpoints run no code, name what they refuse, and resume at the exact batch."""

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clearface.data.datamodule import EpochBatchSampler
from clearface.errors import ClearfaceError
from clearface.train.checkpoints import BEST, LAST, batch_seed, check_resumable, read_checkpoint

ROOT = Path(__file__).resolve().parents[2]


class _Plant:
    """Unpickling this runs a shell command: what a hostile run folder would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant_raw_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"state_dict": _Plant(marker)}))


def _plant_torch_zip(path: Path, marker: Path) -> None:
    torch.save({"state_dict": {}, "loops": _Plant(marker)}, path)


PLANTS = {"raw pickle": _plant_raw_pickle, "torch zip": _plant_torch_zip}


def test_no_unsafe_load_in_the_package():
    hits = [f"{p}:{i}" for p in (ROOT / "src").rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if "weights_only=False" in line]
    assert hits == []


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_read_checkpoint_refuses_a_planted_pickle(tmp_path, plant):
    marker = tmp_path / "pwned"
    f = tmp_path / "last.ckpt"
    PLANTS[plant](f, marker)
    with pytest.raises(ClearfaceError, match=re.escape(str(f))):
        read_checkpoint(f)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint\n", os.urandom(4096)])
def test_read_checkpoint_refuses_junk(tmp_path, content):
    f = tmp_path / "best.ckpt"
    f.write_bytes(content)
    with pytest.raises(ClearfaceError) as e:
        read_checkpoint(f)
    assert str(f) in str(e.value) and "\n" not in str(e.value)


def test_a_torch_file_without_training_state_is_refused(tmp_path):
    (tmp_path / LAST).parent.mkdir(exist_ok=True)
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / LAST)
    with pytest.raises(ClearfaceError, match="no training state"):
        check_resumable(tmp_path)
    torch.save({"w": torch.zeros(1)}, tmp_path / BEST)
    with pytest.raises(ClearfaceError, match="best.ckpt"):
        check_resumable(tmp_path)


@pytest.mark.parametrize("which", [LAST, BEST])
def test_train_resume_with_a_planted_checkpoint_is_one_line_and_runs_nothing(real_small, tmp_path, which):
    from clearface import settings
    zpath, lpath, _ = real_small
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(settings.dump(settings.resolve(str(ROOT / "configs" / "smoke.yaml"))))
    marker = tmp_path / "pwned"
    _plant_raw_pickle(run / "checkpoints" / which, marker)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    res = subprocess.run([sys.executable, "-m", "clearface.cli", "train", "--data", str(zpath), "--labels", str(lpath),
                          "--out", str(run), "--resume", "--cache-dir", str(tmp_path / "cache")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clearface: error:") and which in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not marker.exists()
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before  # nothing trained, nothing written


def test_batch_seed_depends_on_every_coordinate():
    base = batch_seed(0, 1, 2, 0)
    assert base == batch_seed(0, 1, 2, 0) and 0 <= base < 2 ** 63
    assert len({base, batch_seed(1, 1, 2, 0), batch_seed(0, 2, 2, 0), batch_seed(0, 1, 3, 0),
                batch_seed(0, 1, 2, 1)}) == 5


@pytest.mark.parametrize("strategy", ["pos_weight", "balanced_sampler", "undersample"])
def test_sampler_resumes_at_the_batch_an_uninterrupted_epoch_would_serve(strategy):
    labels = (np.arange(203) % 5 != 0).astype(np.int8)

    def batches(epoch, resume_at=None):
        s = EpochBatchSampler(labels, 16, strategy, seed=7)
        s.resume_at = resume_at
        s.set_epoch(epoch)
        return [b.tolist() for b in s]

    full = batches(3)
    assert len(full) == len(EpochBatchSampler(labels, 16, strategy, seed=7))
    assert batches(3, resume_at=(3, 5)) == full[5:]
    assert batches(4, resume_at=(3, 5)) == batches(4)  # only the interrupted epoch is shortened
    assert batches(3) != batches(4)


def test_weights_of_another_model_are_refused_with_one_line(tmp_path):
    from clearface.train.checkpoints import check_weights_fit, load_best_weights
    net = torch.nn.Linear(4, 2)
    torch.save({"state_dict": torch.nn.Linear(4, 3).state_dict()}, tmp_path / BEST)
    with pytest.raises(ClearfaceError, match="do not fit") as e:
        load_best_weights(net, tmp_path)
    assert "best.ckpt" in str(e.value) and "\n" not in str(e.value)
    good = {k: v + 1 for k, v in net.state_dict().items()}
    torch.save({"state_dict": good}, tmp_path / BEST)
    assert load_best_weights(net, tmp_path) == 0 and torch.equal(net.weight, good["weight"])  # no epoch stored
    torch.save({"state_dict": good, "epoch": 3}, tmp_path / BEST)
    assert load_best_weights(net, tmp_path) == 3
    assert check_weights_fit(net, tmp_path / BEST) is not None
    (tmp_path / BEST).unlink()
    assert load_best_weights(net, tmp_path) is None  # no best epoch: the module keeps its last weights
