"""``init_from`` (fine-tuning from a model file): the weights training starts from, and the refusals
that keep a model away from validation or held-out images it trained on."""

import numpy as np
import pytest
import torch

from clearface.errors import ClearfaceError
from clearface.settings import resolve
from clearface.train.init_weights import init_state

SPLIT = {"val_fraction": 0.3, "holdout": 80, "seed": 0, "split_seed": 0}  # small_run's split


def _model_file(path, cfg, n_members=1, torch_seed=0, **model_kwargs):
    from clearface.modelfile import make_model_file, save_model_file
    from clearface.models import IMAGENET_MEAN, IMAGENET_STD, get_model
    torch.manual_seed(torch_seed)
    members = [{"model": "cfnet_tiny", "model_kwargs": model_kwargs, "build_kwargs": {},
                "state_dict": get_model("cfnet_tiny", **model_kwargs).state_dict()} for _ in range(n_members)]
    save_model_file(make_model_file(members, IMAGENET_MEAN, IMAGENET_STD, "none", 0.5, "min_hter", "test", {}, cfg),
                    path)
    return path, members[0]["state_dict"]


def _cfg(**overrides):
    return resolve(overrides={"model": "cfnet_tiny", "model_kwargs": {}, **SPLIT, **overrides})


def test_same_split_gives_the_files_weights(small_run, tmp_path):
    _, _, _, s, y, parts = small_run
    path, state = _model_file(tmp_path / "m.pt", _cfg(seed=7))  # another training seed: the split seed decides
    got, record = init_state(_cfg(init_from=str(path)), s.hashes, y, parts)
    from clearface.outputs import file_sha256
    assert record == {"path": str(path), "sha256": file_sha256(path)}
    assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    assert init_state(_cfg(), s.hashes, y, parts) is None  # no init_from: ImageNet's or random weights


def test_a_model_that_trained_on_this_runs_scored_images_is_refused(small_run, tmp_path):
    _, _, _, s, y, parts = small_run
    path, _ = _model_file(tmp_path / "m.pt", _cfg(split_seed=1))  # its training part holds our validation images
    with pytest.raises(ClearfaceError, match=r"m\.pt: its stored split trained on \d+ of this run's validation or "
                                             r"held-out images.*split_seed 1"):
        init_state(_cfg(init_from=str(path)), s.hashes, y, parts)
    path, _ = _model_file(tmp_path / "h.pt", _cfg(holdout=40))  # a smaller held-out part: it trained on ours
    with pytest.raises(ClearfaceError, match="its stored split trained on"):
        init_state(_cfg(init_from=str(path)), s.hashes, y, parts)
    # data it never saw: the user says so, and the check is skipped
    assert init_state(_cfg(init_from=str(path), init_split_check=False), s.hashes, y, parts) is not None


def test_what_cannot_be_checked_or_loaded_is_one_line(small_run, tmp_path):
    _, _, _, s, y, parts = small_run
    cases = []
    path, _ = _model_file(tmp_path / "limited.pt", _cfg(limit_images=400))
    cases.append((_cfg(init_from=str(path)), r"its split was made on 400 images, this run reads 300"))
    path, _ = _model_file(tmp_path / "all.pt", _cfg())
    cases.append((_cfg(init_from=str(path), limit_images=300), r"made on all the images, this run reads 300"))
    path, _ = _model_file(tmp_path / "ens.pt", _cfg(), n_members=2)
    cases.append((_cfg(init_from=str(path)), r"ens\.pt: init_from takes one model; this file merges 2"))
    path, _ = _model_file(tmp_path / "wide.pt", _cfg(), width=12)
    cases.append((_cfg(init_from=str(path)), r"wide\.pt: its model_kwargs\.width is 12, this run's None; fine-tune "
                                             r"the network it is \(its model_kwargs: \{'width': 12\}\)"))
    # kwargs that agree but weights that do not fit (a file edited by hand): one line, not a traceback
    from clearface.modelfile import load_model_file, save_model_file
    path, _ = _model_file(tmp_path / "edited.pt", _cfg(), width=12)
    blob = load_model_file(path)
    blob["members"][0]["model_kwargs"] = {}
    save_model_file(blob, path)
    cases.append((_cfg(init_from=str(path)), r"edited\.pt: its weights do not fit cfnet_tiny with model_kwargs "
                                             r"\{\}: size mismatch"))
    path, _ = _model_file(tmp_path / "m.pt", _cfg())
    cases.append((_cfg(init_from=str(path), model="cfnet"), r"holds a 'cfnet_tiny' model, this run trains 'cfnet'"))
    cases.append((_cfg(init_from=str(path), folds=3), "init_from with folds > 1"))
    cases.append((_cfg(init_from=str(tmp_path / "missing.pt")), "missing.pt: no such model file"))
    for cfg, match in cases:
        with pytest.raises(ClearfaceError, match=match):
            init_state(cfg, s.hashes, y, parts)


def test_training_starts_from_the_files_weights(small_run, tmp_path):
    """A real one-epoch run at a learning rate too small to move anything: the trained weights are the
    file's, not a fresh initialisation's (the same run without init_from ends far from them)."""
    from clearface.modelfile import load_model_file
    from clearface.train.run import train

    zpath, lpath, _, _, _, _ = small_run
    common = dict(epochs=1, lr=1e-12, progress_bar=False, track_holdout=False, tta="none", checkpoint_minutes=None)
    path, state = _model_file(tmp_path / "start.pt", _cfg(), torch_seed=123)
    for init, close in ((str(path), True), (None, False)):
        out = tmp_path / f"run_{close}"
        result = train(zpath, lpath, out, _cfg(init_from=init, **common))
        assert ("init_from" in result) is close
        trained = load_model_file(out / "model.pt")["members"][0]["state_dict"]
        weights = [k for k in state if k.endswith("weight") and state[k].dim() > 1]  # convs and linear layers
        assert weights
        assert all(torch.allclose(trained[k].float(), state[k].float(), atol=1e-6) for k in weights) is close
