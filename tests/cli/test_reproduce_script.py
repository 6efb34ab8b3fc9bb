"""scripts/reproduce_shipped.sh runs the commands the model card promises, resumes, and refuses a bad part name.

A stand-in `clearface` (the script's $CLEARFACE) records each call and makes the files a real one would, so the
script's own logic is what is tested: which recipe builds which packaged model, and that a finished run is
not trained again.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "reproduce_shipped.sh"

FAKE = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
args=("$@"); out=""
for ((i=0; i<${#args[@]}; i++)); do [ "${args[$i]}" = --out ] && out=${args[$((i+1))]}; done
case $1 in
  train) mkdir -p "$out"; touch "$out/model.pt" ;;
  pseudolabel|ensemble|calibrate|export) touch "$out" ;;
esac
"""


def _run(tmp_path, *args):
    fake = tmp_path / "clearface"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = dict(os.environ, CLEARFACE=str(fake), CALLS=str(calls))
    r = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "data"), str(tmp_path / "out"), *args],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return r, [shlex.split(line) for line in lines]


def _opt(call, name):
    return call[call.index(name) + 1]


def test_default_part_trains_the_shipped_recipe_calibrates_and_exports_int8(tmp_path):
    r, calls = _run(tmp_path, "default")
    assert r.returncode == 0, r.stderr
    assert [c[0] for c in calls] == ["train", "calibrate", "export"]
    config = ROOT / _opt(calls[0], "--config")
    recipe = yaml.safe_load(config.read_text())
    # the packaged default's architecture, so the card's description and the script cannot drift apart
    assert recipe["model"] == "mobilenet_v2"
    assert recipe["model_kwargs"]["input_size"] == 128 and recipe["model_kwargs"]["frozen_blocks"] == 4
    assert {"--tta", "none", "--half"} <= set(calls[1])
    assert "--int8" in calls[2] and _opt(calls[2], "--calib-part") == "val"
    assert _opt(calls[2], "--out").endswith("clearface_default.int8.onnx")


def test_a_finished_run_is_not_trained_again(tmp_path):
    _run(tmp_path, "default")
    r, calls = _run(tmp_path, "default")
    assert r.returncode == 0, r.stderr
    assert [c[0] for c in calls] == ["train", "calibrate", "export", "calibrate", "export"]


def test_ensemble_part_builds_teacher_pseudolabels_student_and_ensemble(tmp_path):
    r, calls = _run(tmp_path, "ensemble")
    assert r.returncode == 0, r.stderr
    assert [c[0] for c in calls] == ["train"] * 4 + ["ensemble", "pseudolabel", "train", "ensemble", "export"]
    for c in calls:
        if c[0] == "train":
            assert (ROOT / _opt(c, "--config")).is_file()


@pytest.mark.parametrize("part", ["everything", "Default"])
def test_a_bad_part_name_is_refused_in_one_line(tmp_path, part):
    r, calls = _run(tmp_path, part)
    assert r.returncode == 2 and calls == []
    assert len(r.stderr.strip().splitlines()) == 1 and "default, ensemble or all" in r.stderr
