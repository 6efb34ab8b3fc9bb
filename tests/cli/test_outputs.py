"""The one atomic writer and the output guard (clearface.outputs), and --json / stderr conventions."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from clearface.errors import ClearfaceError
from clearface.outputs import (atomic_path, check_input, check_output, check_output_dir, file_sha256,
                               removed_on_failure, write_text_atomic)
from conftest import jpeg_bytes, write_zip


def test_symlinked_output_is_written_through(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    write_text_atomic(check_output(link), "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "real.txt"]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "x.bin"
    out.write_bytes(b"before")
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert out.read_bytes() == b"before" and os.listdir(tmp_path) == ["x.bin"]
    assert file_sha256(out) == hashlib.sha256(b"before").hexdigest()


@pytest.mark.parametrize("make,fragment", [
    (lambda d: "/dev/full", "device"), (lambda d: d, "folder"), (lambda d: d / "missing" / "x", "does not exist"),
    (lambda d: d / "in.txt", "input"), (lambda d: d / "ro" / "x", "read-only"),
])
def test_check_output_refuses(tmp_path, make, fragment):
    (tmp_path / "in.txt").write_text("1\n")
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(ClearfaceError, match=fragment):
        check_output(make(tmp_path), inputs=[tmp_path / "in.txt"])


def test_check_output_dir_and_input(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ClearfaceError, match="not a folder"):
        check_output_dir(tmp_path / "f")
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ClearfaceError, match="FIFO"):
        check_input(tmp_path / "fifo", "--labels")


def test_removed_on_failure(tmp_path):
    new = tmp_path / "new"
    with pytest.raises(ClearfaceError):
        with removed_on_failure(new):
            new.mkdir()
            (new / "train.log").write_text("x")
            raise ClearfaceError("bad data")
    assert not new.exists()
    old = tmp_path / "old"
    old.mkdir()
    (old / "mine.txt").write_text("keep")
    with pytest.raises(ClearfaceError):
        with removed_on_failure(old):
            (old / "config.yaml").write_text("x")
            raise ClearfaceError("bad model")
    assert os.listdir(old) == ["mine.txt"]
    with pytest.raises(KeyboardInterrupt):  # an interrupted run keeps its files for --resume
        with removed_on_failure(new):
            new.mkdir()
            raise KeyboardInterrupt
    assert new.exists()


@pytest.fixture()
def four_images(tmp_path):
    rng = np.random.default_rng(0)
    return write_zip(tmp_path / "d.zip", [jpeg_bytes(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
                                          for _ in range(4)])


def test_predict_json_on_stdout_prose_on_stderr(tmp_path, four_images, tiny_model_file, capsys):
    from clearface.cli import main
    out = tmp_path / "o.txt"
    assert main(["predict", "--model", str(tiny_model_file), "--data", str(four_images), "--out", str(out),
                 "--engine", "torch", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n"] == 4 and "wrote 4 labels" in captured.err
    assert main(["predict", "--model", str(tiny_model_file), "--data", str(four_images), "--out", str(out),
                 "--engine", "torch"]) == 0
    assert capsys.readouterr().out == ""


def test_audit_prints_json_only_when_asked(tmp_path, capsys):
    from clearface.cli import main
    scores = tmp_path / "s.csv"
    scores.write_text("name,label,score\na.jpg,1,0.9\nb.jpg,0,0.2\nc.jpg,1,0.05\nd.jpg,0,0.1\n")
    assert main(["audit", "--scores", str(scores), "--out", str(tmp_path / "sus.csv")]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "suspects" in captured.err
    assert main(["audit", "--scores", str(scores), "--out", str(tmp_path / "sus.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 4


def test_predict_cannot_overwrite_its_input(tmp_path, four_images, tiny_model_file, capsys):
    from clearface.cli import main
    before = four_images.read_bytes()
    link = tmp_path / "alias.zip"
    link.symlink_to(four_images)
    for out in (four_images, link):
        assert main(["predict", "--model", str(tiny_model_file), "--data", str(four_images), "--out", str(out)]) == 2
        assert "input" in capsys.readouterr().err
    assert four_images.read_bytes() == before
