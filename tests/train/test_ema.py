"""``ema_decay``: an exponential moving average of the weights is what validation scores and the model file
stores, and a stopped run resumes the same average."""

import pytest
import torch

from clearface.settings import resolve

SPLIT = {"val_fraction": 0.3, "holdout": 80, "seed": 0, "split_seed": 0}  # small_run's split


def _cfg(**overrides):
    return resolve(overrides={"model": "cfnet_tiny", "model_kwargs": {}, **SPLIT, **overrides})


def test_each_step_moves_the_average_by_one_minus_decay():
    from clearface.train.module import HTERModule
    module = HTERModule(_cfg(ema_decay=0.75), pos_weight=1.0)
    assert module.scoring_model is module.ema.module and not any(p.requires_grad for p in module.ema.parameters())
    assert all(p.requires_grad for p in module.model.parameters())  # the raw weights still train
    name = next(k for k, v in module.model.named_parameters() if v.dim() > 1)
    raw, avg = dict(module.model.named_parameters())[name], dict(module.ema.module.named_parameters())[name]
    with torch.no_grad():
        raw.fill_(4.0)
    module.on_train_batch_end(None, None, 0)  # the first update copies
    assert torch.equal(avg, torch.full_like(avg, 4.0))
    with torch.no_grad():
        raw.fill_(0.0)
    module.on_train_batch_end(None, None, 1)
    assert torch.allclose(avg, torch.full_like(avg, 3.0))  # 0.75 * 4 + 0.25 * 0
    off = HTERModule(_cfg(), pos_weight=1.0)
    assert off.ema is None and off.scoring_model is off.model  # off: the raw weights score


@pytest.mark.slow
def test_the_model_file_holds_the_average_and_a_stopped_run_resumes_it(small_run, tmp_path):
    from clearface.modelfile import load_model_file
    from clearface.train.checkpoints import read_checkpoint
    from clearface.train.run import train

    zpath, lpath, _, _, _, _ = small_run
    common = dict(epochs=2, ema_decay=0.9, batch_size=16, progress_bar=False, track_holdout=False, tta="none",
                  checkpoint_minutes=None, early_stopping_patience=0)
    whole = tmp_path / "whole"
    train(zpath, lpath, whole, _cfg(**common))
    stored = load_model_file(whole / "model.pt")["members"][0]["state_dict"]
    ckpt = read_checkpoint(whole / "checkpoints" / "best.ckpt")["state_dict"]
    weights = [k for k in stored if stored[k].dim() > 1]
    assert all(torch.equal(stored[k], ckpt[f"ema.module.{k}"]) for k in stored)
    assert not all(torch.equal(stored[k], ckpt[f"model.{k}"]) for k in weights)  # not the raw weights

    parts = tmp_path / "in_parts"
    train(zpath, lpath, parts, _cfg(stop_after=1, **common))
    train(zpath, lpath, parts, _cfg(**common), resume=True)
    resumed = load_model_file(parts / "model.pt")["members"][0]["state_dict"]
    assert all(torch.equal(resumed[k], stored[k]) for k in stored)
    last = [read_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"] for run in (whole, parts)]
    assert any(k.startswith("ema.") for k in last[0]) and last[0].keys() == last[1].keys()
    assert all(torch.equal(last[0][k], last[1][k]) for k in last[0])  # the average after epoch 2, bit for bit
