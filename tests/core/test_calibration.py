"""Threshold rules: the registry, each rule's defining property, the chooser/applier, the protocol."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearface import calibration, metrics
from clearface.calibration import (FixedThreshold, ThresholdChooser, choose_and_score, fit_threshold,
                                   operating_points, parse_rule, rule_names)
from clearface.errors import ClearfaceError


def _scores(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.8).astype(int)
    s = np.clip(0.35 * y + rng.normal(0.35, 0.2, n), 0, 1)
    return s, y


def _rates(s, y, tau):
    return metrics.far_frr(s, y, tau)


def test_min_hter_and_eer_match_metrics():
    s, y = _scores()
    assert fit_threshold(s, y, "min_hter") == metrics.min_hter_threshold(s, y)
    assert fit_threshold(s, y, "eer") == metrics.eer_threshold(s, y)[0]


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.2])
def test_far_at_is_the_lowest_frr_with_far_within_target(target):
    s, y = _scores()
    tau = fit_threshold(s, y, f"far_at:{target}")
    far, frr = _rates(s, y, tau)
    assert far <= target + 1e-12
    # no threshold with FAR within the target rejects fewer class-1 images
    best = min(_rates(s, y, t)[1] for t in np.append(np.unique(s), np.inf) if _rates(s, y, t)[0] <= target + 1e-12)
    assert frr == pytest.approx(best)


@pytest.mark.parametrize("target", [0.0, 0.01, 0.05, 0.2])
def test_frr_at_is_the_lowest_far_with_frr_within_target(target):
    s, y = _scores(seed=1)
    tau = fit_threshold(s, y, f"frr_at:{target}")
    far, frr = _rates(s, y, tau)
    assert frr <= target + 1e-12
    best = min(_rates(s, y, t)[0] for t in np.append(np.unique(s), np.inf) if _rates(s, y, t)[1] <= target + 1e-12)
    assert far == pytest.approx(best)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 1)), min_size=4, max_size=60))
def test_rules_keep_their_promise_on_any_scores(pairs):
    s = np.array([p[0] for p in pairs])
    y = np.array([p[1] for p in pairs])
    if y.min() == y.max():
        y[0] = 1 - y[0]
    candidates = np.append(np.unique(s), np.inf)
    best_hter = min(metrics.hter(s, y, t) for t in candidates)
    assert metrics.hter(s, y, fit_threshold(s, y, "min_hter")) == pytest.approx(best_hter)
    assert _rates(s, y, fit_threshold(s, y, "far_at:0.1"))[0] <= 0.1 + 1e-12
    assert _rates(s, y, fit_threshold(s, y, "frr_at:0.1"))[1] <= 0.1 + 1e-12


def test_bad_rules_are_one_line_errors():
    for bad, msg in (("median", "unknown threshold rule"), ("far_at", "give a rate"), ("far_at:x", "give a rate"),
                     ("far_at:1.5", "between 0 and 1"), ("far_at:nan", "between 0 and 1"), ("far_at:-0.1", "rate"),
                     ("eer:0.1", "takes no value")):
        with pytest.raises(ClearfaceError, match=msg):
            fit_threshold([0.1, 0.9], [0, 1], bad)
    assert "far_at:<x>" in rule_names() and "min_hter" in rule_names()
    assert parse_rule("frr_at:0.02")[1] == 0.02


def test_chooser_and_applier_are_separate():
    s, y = _scores()
    fixed = ThresholdChooser("eer").fit(s, y, source="test scores")
    assert isinstance(fixed, FixedThreshold) and fixed.rule == "eer" and fixed.source == "test scores"
    assert np.array_equal(fixed.predict(s), (s >= fixed.threshold).astype(np.int8))
    # applying never re-fits: a fixed tau on new scores is just a comparison
    assert FixedThreshold(0.5).predict([0.2, 0.5, 0.7]).tolist() == [0, 1, 1]
    with pytest.raises(ClearfaceError):
        ThresholdChooser("nope")


def test_protocol_chooses_on_validation_and_only_scores_held_out():
    sv, yv = _scores(seed=2)
    st_, yt = _scores(seed=3)
    r = choose_and_score(sv, yv, "min_hter", "validation split (400 images)", st_, yt, n_boot=200)
    assert r["threshold"] == metrics.min_hter_threshold(sv, yv)
    assert r["threshold"] != metrics.min_hter_threshold(st_, yt)  # held-out data did not choose it
    assert r["test"]["hter"] == pytest.approx(metrics.hter(st_, yt, r["threshold"]))
    lo, hi = r["test"]["hter_ci95"]
    assert lo <= r["test"]["hter"] <= hi
    assert "validation split" in r["test_protocol"] and "400-image held-out" in r["test_protocol"]
    assert "test" not in choose_and_score(sv, yv, "eer", "v")


def test_operating_points_are_the_far_at_and_frr_at_points():
    s, y = _scores()
    rows = operating_points(s, y, far_targets=(0.01, 0.1), frr_targets=(0.05,))
    assert [(r["fixed"], r["target"]) for r in rows] == [("FAR", 0.01), ("FAR", 0.1), ("FRR", 0.05)]
    for r in rows:
        rule = f"{r['fixed'].lower()}_at:{r['target']}"
        far, frr = _rates(s, y, fit_threshold(s, y, rule))
        assert (far, frr) == pytest.approx((r["far"], r["frr"]))
        assert r["hter"] == pytest.approx((far + frr) / 2)


def test_every_registered_rule_is_reachable_by_name():
    s, y = _scores()
    for rule in calibration.RULES.values():
        name = f"{rule.name}:0.05" if rule.takes_value else rule.name
        assert 0 <= fit_threshold(s, y, name) <= 1 + 1e-6


def test_far_1pct_is_the_lowest_frr_with_far_at_most_1_percent_everywhere_tau_is_chosen(tmp_path):
    s, y = _scores(n=2000, seed=4)
    tau = fit_threshold(s, y, "far_1pct")
    far, frr = _rates(s, y, tau)
    assert far <= 0.01
    candidates = [t for t in np.append(np.unique(s), np.inf) if _rates(s, y, t)[0] <= 0.01]
    assert frr == pytest.approx(min(_rates(s, y, t)[1] for t in candidates))
    # accepted wherever a rule is named: the training setting and --threshold-rule
    from clearface.cli import build_parser
    from clearface.settings import resolve
    assert resolve(overrides={"threshold_method": "far_1pct"})["threshold_method"] == "far_1pct"
    args = build_parser().parse_args(["calibrate", "--data", "d", "--labels", "l", "--model", "m", "--run", "r",
                                      "--out", "o", "--threshold-rule", "far_1pct"])
    assert args.threshold_rule == "far_1pct"


def test_threshold_between_adjacent_floats_keeps_the_best_counts():
    """Two neighbouring doubles have no midpoint (it rounds onto the lower one): tau must still
    separate them (found by hypothesis in the property test above)."""
    s = np.array([5e-324, 0.0, 0.0, 0.0])
    y = np.array([1, 0, 0, 0])
    tau = fit_threshold(s, y, "min_hter")
    assert metrics.hter(s, y, tau) == 0.0
    s2 = np.array([np.nextafter(0.5, 1.0), 0.5, 0.5])
    assert metrics.hter(s2, np.array([1, 0, 0]), fit_threshold(s2, np.array([1, 0, 0]), "min_hter")) == 0.0
