"""Typed settings: the defaults are the default recipe, layering, aliases, and old run folders still resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from clearface.errors import ClearfaceError
from clearface.settings import DEFAULTS, AugmentSettings, Settings, parse_overrides, resolve
from clearface.settings.fields import GanSettings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_default_recipe():
    # the README's default recipe; resolving it adds nothing to the built-in defaults
    assert resolve() == resolve(str(ROOT / "configs" / "mobilenet_v2_96.yaml"))
    recipe = yaml.safe_load((ROOT / "configs" / "mobilenet_v2_96.yaml").read_text())
    for key, value in recipe.items():
        if key == "augment":
            assert {k: DEFAULTS["augment"][k] for k in value} == {k: (list(v) if isinstance(v, list) else v)
                                                                  for k, v in value.items()}
        else:
            assert DEFAULTS[key] == value, key


@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_every_shipped_recipe_resolves(recipe):
    cfg = resolve(str(ROOT / "configs" / recipe))
    assert set(cfg) == set(DEFAULTS)


def test_a_recipe_means_what_it_says():
    # default.yaml trains cfnet from scratch: no mobilenet arguments and no lowres leak in from the defaults
    cfg = resolve(str(ROOT / "configs" / "default.yaml"))
    assert cfg["model"] == "cfnet" and "input_size" not in cfg["model_kwargs"]
    assert cfg["augment"]["lowres"] == 0.0 and cfg["split_seed"] is None


def test_layers_and_merging():
    cfg = resolve(str(ROOT / "configs" / "smoke.yaml"), parse_overrides(
        ["--epochs", "3", "--augment.erase", "0.2", "--model-kwargs.width", "24", "--split_seed=5"]))
    assert cfg["epochs"] == 3 and cfg["augment"]["erase"] == 0.2 and cfg["augment"]["flip"] is True
    assert cfg["model_kwargs"] == {"width": 24, "depths": [1, 1, 1, 1]} and cfg["split_seed"] == 5
    # changing the model on the command line drops the other model's arguments
    assert resolve(overrides={"model": "cfnet_tiny"})["model_kwargs"] == {}


def test_resize_is_a_deprecated_alias_of_preprocess():
    assert resolve(overrides={"resize": True})["preprocess"] == "resize"
    cfg = resolve(overrides={"preprocess": "detect"})
    assert cfg["preprocess"] == "detect" and cfg["resize"] is False


def test_an_old_config_yaml_still_resumes(tmp_path):
    # the untyped dict that runs wrote before the settings were typed
    old = {"model": "cfnet", "model_kwargs": {"width": 16}, "epochs": 2, "batch_size": 64, "lr": 3e-3,
           "weight_decay": 0.05, "schedule": "onecycle", "warmup_epochs": 1.0, "imbalance": "pos_weight",
           "focal_gamma": 2.0, "soft_hter_temperature": 1.0, "label_smoothing": 0.0, "augment": {}, "tta": "flip",
           "threshold_method": "min_hter", "val_fraction": 0.2, "holdout": 400, "holdout_seed": 12345,
           "track_holdout": False, "folds": 1, "seed": 0, "split_seed": None, "early_stopping_patience": 0,
           "max_minutes": None, "stop_after": None, "pseudo_data": None, "pseudo_labels": None,
           "limit_images": 2000, "resize": False, "cache_dir": None, "num_threads": None, "channels_last": True,
           "eval_batch_size": 512, "accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto",
           "precision": "32-true", "log_every_n_steps": 5, "progress_bar": True}
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(old))
    cfg = resolve(str(saved))
    assert {k: cfg[k] for k in old if k != "augment"} == {k: v for k, v in old.items() if k != "augment"}
    assert cfg["augment"] == dataclasses.asdict(AugmentSettings()) and cfg["preprocess"] == "crop"
    assert yaml.safe_load(yaml.safe_dump(cfg)) == cfg  # config.yaml stays plain YAML


@pytest.mark.parametrize("overrides,fragment", [
    ({"lr": float("nan")}, "--lr"), ({"lr": 0}, "--lr"), ({"epochs": True}, "--epochs"),
    ({"limit_images": "abc"}, "--limit-images"), ({"limit_images": -1}, "--limit-images"),
    ({"batch_size": 0}, "--batch-size"), ({"nope": 1}, "'nope'"), ({"augment": {"flip": 2}}, "--augment.flip"),
])
def test_bad_values_are_one_line_errors(overrides, fragment):
    with pytest.raises(ClearfaceError, match=fragment.replace(".", r"\.")):
        resolve(overrides=overrides)


def test_train_help_lists_every_setting_with_its_default(capsys):
    from clearface.cli import main
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        if f.metadata["kind"] in ("dict", "augment", "section"):  # nested sections: --SECTION.KEY below
            continue
        assert f"--{f.name.replace('_', '-')}" in text, f.name
        if f.name not in ("cache_dir", "preprocess"):  # data options of every command; their default is per model
            assert f"(default: {getattr(defaults, f.name)})" in text, f.name
    for f in dataclasses.fields(AugmentSettings):
        assert f"--augment.{f.name}" in text
    for f in dataclasses.fields(GanSettings):
        assert f"--gan.{f.name}" in text
