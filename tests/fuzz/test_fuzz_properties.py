"""Generated bad inputs (hypothesis): label files, zip entry names, model-file dicts, recipe values.

Each example must keep the same promise as the table: exit 2, one line naming the file, nothing left behind.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearface.cli import main
from conftest import jpeg_bytes, write_zip
from fuzz_world import assert_promise, snapshot

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
IMG = jpeg_bytes(np.full((64, 64, 3), 128, np.uint8))


def _run(root: Path, argv: list, capsys, names: tuple) -> None:
    before = snapshot(root)
    code = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    assert_promise(code, err, before, snapshot(root), names)


# ---------------------------------------------------------------------------- label files

bad_token = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=LINE_BREAKS),
                    max_size=8).filter(lambda t: t.strip() not in ("0", "1"))


@FAST
@given(good=st.lists(st.sampled_from(["0", "1", " 1", "0 "]), min_size=3, max_size=3),
       bad=bad_token, where=st.integers(0, 3))
def test_label_file_with_a_bad_line(capsys, good, bad, where):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        data = write_zip(root / "d.zip", [IMG] * 4)
        lines = list(good)
        lines.insert(where, bad)
        labels = root / "lab.txt"
        labels.write_text("\n".join(lines) + "\n", encoding="utf-8")
        # a bad line is named by its number; a blank last line is trailing and then the count is wrong
        _run(root, ["evaluate", "--data", data, "--labels", labels], capsys, ("lab.txt",))


@FAST
@given(n=st.integers(0, 12).filter(lambda n: n != 4), body=st.sampled_from(["0", "1"]))
def test_label_count_must_match(capsys, n, body):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        data = write_zip(root / "d.zip", [IMG] * 4)
        labels = root / "lab.txt"
        labels.write_text("".join(f"{body}\n" for _ in range(n)))
        _run(root, ["train", "--data", data, "--labels", labels, "--out", root / "run", "--holdout", "0",
                    "--model", "cfnet_tiny"], capsys, ("lab.txt",))


# ---------------------------------------------------------------------------- zip entry names

stem = st.text(alphabet="abcdefghij0123456789_-", min_size=1, max_size=8)
unsafe_name = st.one_of(
    stem.map(lambda s: f"../{s}.jpg"), stem.map(lambda s: f"/abs/{s}.jpg"), stem.map(lambda s: f"C:/{s}.jpg"),
    stem.map(lambda s: f"img/../../{s}.png"), stem.map(lambda s: f"\\\\server\\{s}.jpg"),
    stem.map(lambda s: f"img/{s}.exe"), stem.map(lambda s: f"img/{s}.txt"), stem.map(lambda s: f"img/{s}"),
)


@FAST
@given(names=st.lists(unsafe_name, min_size=1, max_size=3), n_good=st.integers(0, 3))
def test_zip_with_unsafe_or_unknown_entries(capsys, tiny_model_file, names, n_good):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        z = root / "evil.zip"
        with zipfile.ZipFile(z, "w") as zf:
            for i in range(n_good):
                zf.writestr(f"img/{i + 1:06d}.jpg", IMG)
            for n in names:
                zf.writestr(n, IMG)
        _run(root, ["predict", "--model", tiny_model_file, "--data", z, "--out", root / "o.txt"], capsys, ("evil.zip",))


@FAST
@given(junk=st.binary(min_size=0, max_size=64))
def test_zip_entry_that_is_not_an_image(capsys, tiny_model_file, junk):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        z = write_zip(root / "j.zip", [IMG, junk])
        _run(root, ["predict", "--model", tiny_model_file, "--data", z, "--out", root / "o.txt", "--engine", "torch"],
             capsys, ("000002.jpg",))


# ---------------------------------------------------------------------------- model-file dicts

scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=6))
model_keys = st.sampled_from(["format", "format_version", "members", "threshold", "threshold_method", "preprocess",
                              "tta", "config", "metrics", "mean", "std", "classes", "x"])
model_dict = st.dictionaries(model_keys, st.one_of(scalar, st.lists(scalar, max_size=3),
                                                   st.dictionaries(st.text(max_size=4), scalar, max_size=3)),
                             max_size=8)


@FAST
@given(blob=model_dict, marker=st.booleans())
def test_model_file_made_of_random_dicts(capsys, blob, marker):
    import torch

    from clearface import modelfile
    if marker:  # look like a clearface file so the deeper checks run
        blob = {**blob, "format": modelfile.FORMAT}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        data = write_zip(root / "d.zip", [IMG])
        m = root / "m.pt"
        buf = io.BytesIO()
        torch.save(blob, buf)
        m.write_bytes(buf.getvalue())
        _run(root, ["predict", "--model", m, "--data", data, "--out", root / "o.txt", "--engine", "torch"], capsys,
             ("m.pt",))


@FAST
@given(key=st.sampled_from(["epochs", "lr", "batch_size", "limit_images", "val_fraction", "holdout", "tta",
                            "augment", "model_kwargs", "seed", "folds", "track_holdout"]),
       value=st.one_of(st.text(alphabet="abcxyz!@", min_size=1, max_size=5), st.floats(allow_nan=True).filter(
           lambda v: v != v or v < 0), st.lists(st.integers(), min_size=1, max_size=2)))
def test_recipe_with_a_bad_value(capsys, key, value):
    import yaml
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        recipe = root / "r.yaml"
        recipe.write_text(yaml.safe_dump({"model": "cfnet_tiny", key: value}))
        data = write_zip(root / "d.zip", [IMG] * 2)
        (root / "l.txt").write_text("0\n1\n")
        _run(root, ["train", "--data", data, "--labels", root / "l.txt", "--config", recipe, "--out", root / "run"],
             capsys, ("r.yaml", key))

