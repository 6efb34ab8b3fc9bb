"""Preprocessing steps: stored in the model file, old files read as crop/resize, --preprocess overrides."""

import numpy as np
import pytest

from clearface.cli import main
from clearface.errors import ClearfaceError
from clearface.preprocess import resolve, step_arg, stored_step
from conftest import jpeg_bytes, write_zip


def test_old_model_files_read_as_crop_or_resize():
    assert stored_step({"preprocess": {"size": 64}}) == "crop"
    assert stored_step({"preprocess": {"size": 64}, "config": {"resize": True}}) == "resize"
    assert stored_step({"preprocess": {"size": 64, "step": "detect"}, "config": {"resize": True}}) == "detect"
    with pytest.raises(ClearfaceError, match="preprocess.step"):
        stored_step({"preprocess": {"step": "squash"}, "path": "m.pt"})


def test_override_and_framing():
    from clearface.faces import default_framing
    blob = {"preprocess": {"step": "crop"}}
    assert resolve(blob) == ("crop", None)
    step, framing = resolve(blob, "detect")
    assert step == "detect" and framing == default_framing()
    own = dict(default_framing(), anchor="box")
    assert resolve({"preprocess": {"step": "detect", "framing": own}}) == ("detect", own)
    with pytest.raises(ClearfaceError, match="invalid face framing"):
        resolve({"preprocess": {"step": "detect", "framing": {"anchor": "eyes"}}, "path": "m.pt"})


def test_resize_is_an_alias_of_preprocess_resize():
    assert step_arg(None, True) == "resize" and step_arg("resize", True) == "resize"
    assert step_arg(None, False) is None and step_arg("detect") == "detect"
    with pytest.raises(ClearfaceError, match="contradicts"):
        step_arg("detect", True)


def test_new_model_files_store_step_and_framing(tiny_model_file):
    from clearface.modelfile import load_model_file
    pre = load_model_file(tiny_model_file)["preprocess"]
    assert pre["step"] == "crop" and pre["framing"]["anchor"] in ("eyes", "landmarks", "box")


@pytest.fixture()
def resize_model(tiny_model_file, tmp_path):
    from clearface.modelfile import load_model_file, save_model_file
    blob = load_model_file(tiny_model_file)
    blob["preprocess"] = dict(blob["preprocess"], step="resize")
    save_model_file(blob, tmp_path / "resize.pt")
    return tmp_path / "resize.pt"


def test_step_comes_from_the_model_file_and_the_option_overrides(resize_model, tmp_path, capsys):
    rng = np.random.default_rng(0)
    z = write_zip(tmp_path / "odd.zip", [jpeg_bytes(rng.integers(0, 255, (90, 70, 3), dtype=np.uint8)) for _ in range(3)])
    out = tmp_path / "labels.txt"
    assert main(["predict", "--model", str(resize_model), "--data", str(z), "--out", str(out), "--engine", "torch"]) == 0
    assert len(out.read_text().splitlines()) == 3
    out.unlink()
    assert main(["predict", "--model", str(resize_model), "--data", str(z), "--out", str(out), "--engine", "torch",
                 "--preprocess", "crop"]) == 2
    err = capsys.readouterr().err
    assert "000001.jpg" in err and "70x90" in err
    assert not out.exists()


def test_cache_key_includes_the_step(tmp_path, cache_dir):
    from clearface.data import load_images
    rng = np.random.default_rng(1)
    z = write_zip(tmp_path / "a.zip", [jpeg_bytes(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(2)])
    load_images(z, step="crop", cache_dir=cache_dir)
    load_images(z, step="resize", cache_dir=cache_dir)
    assert len(list(cache_dir.glob("*.json"))) == 2
    with pytest.raises(ClearfaceError, match="detect"):
        load_images(z, step="detect", cache_dir=cache_dir)
