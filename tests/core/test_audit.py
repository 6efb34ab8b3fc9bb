import csv

import numpy as np
import pytest

from clearface.audit import audit, find_suspects
from clearface.errors import ClearfaceError


def test_find_suspects_flags_confidently_contradicted_labels():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 1])
    scores = np.array([0.9, 0.95, 0.85, 0.92, 0.1, 0.2, 0.97, 0.02])
    # index 6: labelled 0 but scored like the 1s; index 7: labelled 1, scored like the 0s
    assert set(find_suspects(labels, scores).tolist()) == {6, 7}
    assert find_suspects(labels, scores)[0] == 7  # lowest self-confidence first


def test_audit_writes_ranked_csv_and_sheet(tmp_path, real_small):
    zpath, lpath, labels = real_small
    names = [f"train_img/{i:06d}.jpg" for i in range(1, 301)]
    rng = np.random.default_rng(0)
    scores = np.where(labels == 1, 0.8, 0.2) + rng.normal(0, 0.05, 300)
    scores[[3, 10]] = np.where(labels[[3, 10]] == 1, 0.01, 0.99)  # two planted contradictions
    sc = tmp_path / "val_scores.csv"
    sc.write_text("name,label,score,predicted\n" + "".join(
        f"{n},{y},{s:.4f},0\n" for n, y, s in zip(names, labels, scores)))
    out, sheet = tmp_path / "suspects.csv", tmp_path / "sheet.png"
    r = audit(sc, out, data=zpath, labels_path=lpath, sheet=sheet, cache_dir=tmp_path / "c")
    rows = list(csv.DictReader(open(out)))
    assert {rows[0]["name"], rows[1]["name"]} == {names[3], names[10]}
    assert r["suspects"] == len(rows) >= 2 and sheet.stat().st_size > 1000


def test_audit_bad_scores_file(tmp_path):
    with pytest.raises(ClearfaceError, match="no such scores"):
        audit(tmp_path / "nope.csv", tmp_path / "o.csv")
