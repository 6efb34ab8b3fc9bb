"""``RunDir``: the one place that knows a training run folder's file names and formats.

A run folder holds ``config.yaml`` (resolved settings), ``split.csv`` (every image's part),
``summary.csv`` (one row per epoch), ``val_scores.csv`` / ``test_scores.csv``, ``metrics.json``,
``model.pt``, Lightning checkpoints under ``checkpoints/``, ``train.log`` and TensorBoard events
under ``tb/``; a k-fold run has one such folder per fold (``fold0`` ...). Everything else
(train, calibrate, ensemble, pseudolabel, audit, report, benchmarks) reads and writes them
through this class.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from .data.split import TEST, VAL
from .errors import ClearfaceError
from .modelfile import MODEL_FILE_NAME
from .outputs import write_text_atomic

SUMMARY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_hter")


def read_score_csv(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(names, labels, scores)`` of a ``name,label,score[,...]`` CSV (a run's score file or the like);
    any bad row is one line naming the file and line."""
    p = Path(path)
    if not p.is_file():
        raise ClearfaceError(f"{p}: missing (is this a finished clearface run folder?)" if not p.exists()
                             else f"{p}: not a regular file (a device, FIFO or socket)")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ClearfaceError(f"{p}: not a text CSV file (not UTF-8)") from None
    if "\0" in text:
        raise ClearfaceError(f"{p}: not a text CSV file (contains NUL bytes)")
    reader = csv.reader(io.StringIO(text))
    names, labels, scores = [], [], []
    try:
        header = next(reader, None)
        if not header or not {"name", "label", "score"} <= set(header):
            raise ClearfaceError(f"{p}: expected columns name,label,score")
        col = {k: header.index(k) for k in ("name", "label", "score")}
        for row in reader:
            line = reader.line_num
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) < len(header):
                raise ClearfaceError(f"{p}:{line}: {len(row)} fields, expected {len(header)}")
            lab, sc = row[col["label"]].strip(), row[col["score"]].strip()
            if lab not in ("0", "1"):
                raise ClearfaceError(f"{p}:{line}: label {lab!r} is not 0 or 1")
            try:
                v = float(sc)
            except ValueError:
                raise ClearfaceError(f"{p}:{line}: score {sc!r} is not a number") from None
            if not 0.0 <= v <= 1.0:  # also refuses nan
                raise ClearfaceError(f"{p}:{line}: score {sc!r} is not a probability in [0, 1]")
            names.append(row[col["name"]])
            labels.append(int(lab))
            scores.append(v)
    except csv.Error as exc:
        raise ClearfaceError(f"{p}:{reader.line_num}: malformed CSV ({exc})") from None
    if not names:
        raise ClearfaceError(f"{p}: no score rows")
    return names, np.array(labels), np.array(scores)


class RunDir:
    CONFIG = "config.yaml"
    SPLIT = "split.csv"
    SUMMARY = "summary.csv"
    METRICS = "metrics.json"
    MODEL = MODEL_FILE_NAME
    CHECKPOINTS = "checkpoints"
    LOG = "train.log"
    TENSORBOARD = "tb"

    def __init__(self, path):
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------ paths
    config_path = property(lambda self: self.path / self.CONFIG)
    split_path = property(lambda self: self.path / self.SPLIT)
    summary_path = property(lambda self: self.path / self.SUMMARY)
    metrics_path = property(lambda self: self.path / self.METRICS)
    model_path = property(lambda self: self.path / self.MODEL)
    checkpoints = property(lambda self: self.path / self.CHECKPOINTS)
    log_path = property(lambda self: self.path / self.LOG)

    def scores_path(self, part: str) -> Path:
        if part not in (VAL, TEST):
            raise ValueError(f"no score file for part {part!r}")
        return self.path / f"{part}_scores.csv"

    def fold(self, k: int) -> "RunDir":
        return RunDir(self.path / f"fold{k}")

    def create(self) -> "RunDir":
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    # ------------------------------------------------------------------ split
    def write_split(self, names: list[str], labels, parts) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["index", "name", "label", "part"])
        for i, (name, y, part) in enumerate(zip(names, labels, parts)):
            w.writerow([i, name, int(y), part])
        write_text_atomic(self.split_path, buf.getvalue())

    def _split_rows(self) -> list[dict]:
        if not self.split_path.exists():
            raise ClearfaceError(f"{self.split_path}: missing (--run must be the training run folder of the model)")
        with open(self.split_path, newline="") as f:
            return list(csv.DictReader(f))

    def read_split(self, names: list[str] | None = None) -> np.ndarray:
        """Every image's part; with ``names``, checked image by image against the data's names."""
        rows = self._split_rows()
        if names is not None:
            if len(rows) != len(names):
                raise ClearfaceError(f"{self.split_path}: {len(rows)} rows but --data has {len(names)} images; "
                                     "give the data the run trained on")
            for i, (row, name) in enumerate(zip(rows, names)):
                if row["name"] != name:
                    raise ClearfaceError(f"{self.split_path}: line {i + 2} names {row['name']!r} but image {i + 1} "
                                         f"of --data is {name!r}")
        return np.array([r["part"] for r in rows])

    def split_indices(self, part: str, names: list[str] | None = None) -> np.ndarray:
        """Positions of the images in ``part`` (``val``, ``test``, ``train``, ``fold0`` ...)."""
        return np.flatnonzero(self.read_split(names) == part)

    def validation_split(self, names: list[str]) -> np.ndarray:
        """:meth:`read_split` for choosing tau again: it must have a validation part."""
        parts = self.read_split(names)
        if not (parts == VAL).any():
            raise ClearfaceError(f"{self.split_path}: no 'val' part (a k-fold run calibrates on out-of-fold "
                                 "scores; retrain instead)")
        return parts

    # ------------------------------------------------------------------ scores
    def write_scores(self, part: str, names, labels, scores, tau: float) -> None:
        lines = ["name,label,score,predicted"]
        lines += [f"{n},{int(lab)},{s:.6f},{int(s >= tau)}" for n, lab, s in zip(names, labels, scores)]
        write_text_atomic(self.scores_path(part), "\n".join(lines) + "\n")

    def has_scores(self, part: str) -> bool:
        return self.scores_path(part).exists()

    def read_scores(self, part: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        return read_score_csv(self.scores_path(part))

    # ------------------------------------------------------------------ summary, metrics
    def read_summary(self) -> dict[str, np.ndarray]:
        """``summary.csv`` as columns of floats (missing or empty cells -> NaN)."""
        p = self.summary_path
        if not p.exists():
            raise ClearfaceError(f"{p}: no such file (is this a training run folder?)")
        with open(p, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise ClearfaceError(f"{p}: no epochs recorded yet")
        missing = [c for c in SUMMARY_COLUMNS if c not in rows[0]]
        if missing:
            raise ClearfaceError(f"{p}: missing column(s) {', '.join(missing)}")

        def num(v):
            try:
                return float(v)
            except (TypeError, ValueError):
                return np.nan

        return {k: np.array([num(r.get(k)) for r in rows]) for k in rows[0]}

    def read_summary_rows(self) -> list[dict]:
        """``summary.csv`` as written (one dict of strings per epoch); none before the first epoch."""
        if not self.summary_path.exists():
            return []
        with open(self.summary_path, newline="") as f:
            return list(csv.DictReader(f))

    def write_summary_rows(self, rows: list[dict], columns: list[str]) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        write_text_atomic(self.summary_path, buf.getvalue())

    def write_metrics(self, result: dict) -> None:
        write_text_atomic(self.metrics_path, json.dumps(result, indent=2))

    def read_metrics(self) -> dict:
        try:
            return json.loads(self.metrics_path.read_text())
        except FileNotFoundError:
            raise ClearfaceError(f"{self.metrics_path}: missing (is the run finished?)") from None
