"""Model files: a stored tau that is not a probability, or no members, is refused at load."""

import math

import pytest

from clearface.errors import ClearfaceError
from clearface.modelfile import halve_weights, load_model_file, save_model_file


@pytest.mark.parametrize("tau", [math.nan, -0.1, 1.5, math.inf, "high", None])
def test_bad_stored_tau_is_refused(tiny_model_file, tmp_path, tau):
    blob = load_model_file(tiny_model_file)
    bad = tmp_path / "bad.pt"
    save_model_file(dict(blob, threshold=tau), bad)
    with pytest.raises(ClearfaceError, match="bad.pt: stored threshold") as err:
        load_model_file(bad)
    assert "\n" not in str(err.value)


def test_no_members_is_refused(tiny_model_file, tmp_path):
    blob = load_model_file(tiny_model_file)
    for members in ([], None):
        bad = tmp_path / "empty.pt"
        save_model_file(dict(blob, members=members), bad)
        with pytest.raises(ClearfaceError, match="empty.pt: model file has no members"):
            load_model_file(bad)


def test_edge_taus_and_halving_load(tiny_model_file, tmp_path):
    blob = load_model_file(tiny_model_file)
    for tau in (0.0, 1.0):
        p = tmp_path / f"t{tau}.pt"
        save_model_file(dict(blob, threshold=tau), p)
        assert load_model_file(p)["threshold"] == tau
    half = tmp_path / "half.pt"
    save_model_file(halve_weights(blob), half)
    assert load_model_file(half)["weights_dtype"] == "float16"
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
