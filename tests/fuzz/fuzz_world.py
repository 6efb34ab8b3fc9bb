"""The fuzz suite's world: small good inputs beside every kind of bad path, and the promise checker.

The promise, for every bad input: exit code 2, exactly one line on stderr (``clearface: error: ...``) that
names the thing at fault, no traceback, and the world byte-identical afterwards (no output written, no
run folder left behind, no input damaged).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import jpeg_bytes, write_labels, write_zip


def snapshot(root: Path) -> dict:
    """Every entry under ``root``: kind plus content hash (files) or link target; FIFOs are never opened."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            key = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[key] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[key] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(st.st_mode))
            elif stat.S_ISDIR(st.st_mode):
                out[key] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[key] = ("special", stat.S_IFMT(st.st_mode))
    return out


def _img(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)


@pytest.fixture()
def world(tmp_path, tiny_model_file):
    """Good inputs (4 images, labels, a model, scores, run folders) and bad paths, all under one root."""
    root = tmp_path / "w"
    root.mkdir()
    w = SimpleNamespace(root=root)
    w.data = write_zip(root / "data.zip", [jpeg_bytes(_img(i)) for i in range(4)])
    w.labels = write_labels(root / "labels.txt", [0, 1, 1, 0])
    w.model = root / "model.pt"
    shutil.copyfile(tiny_model_file, w.model)
    w.scores = root / "scores.csv"
    w.scores.write_text("name,label,score\n" + "".join(
        f"img/{i:06d}.jpg,{y},{s}\n" for i, (y, s) in enumerate(zip([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3]), 1)))
    w.run = root / "run"
    w.run.mkdir()
    shutil.copyfile(tiny_model_file, w.run / "model.pt")
    w.run2 = root / "run2"
    w.run2.mkdir()
    shutil.copyfile(tiny_model_file, w.run2 / "model.pt")
    w.folder = root / "adir"
    w.folder.mkdir()
    (w.folder / "keep.txt").write_text("x\n")
    w.images = root / "images"  # a folder of images, as --data
    w.images.mkdir()
    for i in range(2):
        (w.images / f"{i + 1:06d}.png").write_bytes(jpeg_bytes(_img(10 + i), "PNG"))
    w.file = root / "afile.txt"
    w.file.write_text("just a file\n")
    w.fifo = root / "fifo"
    os.mkfifo(w.fifo)
    w.ro = root / "ro"
    w.ro.mkdir()
    w.link_labels = root / "link_to_labels.txt"
    w.link_labels.symlink_to(w.labels)
    w.link_data = root / "link_to_data.zip"
    w.link_data.symlink_to(w.data)
    w.hard_labels = root / "hard_labels.txt"
    os.link(w.labels, w.hard_labels)
    w.missing = root / "no_such_folder"
    w.ro.chmod(0o555)
    yield w
    w.ro.chmod(0o755)


def assert_promise(code: int, err: str, before: dict, after: dict, names: tuple[str, ...]) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("clearface: error: "), err
    for n in names:
        assert str(n) in lines[0], (n, lines[0])
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), f"left behind {added}, removed {removed}, changed {changed}"
