import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearface import metrics
from clearface.errors import ClearfaceError


def test_far_frr_hand_computed():
    scores = [0.1, 0.4, 0.6, 0.9, 0.3, 0.7, 0.8, 0.2]
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    # tau 0.5: class 0 accepted = {0.6, 0.9} -> FAR 2/4; class 1 rejected = {0.3, 0.2} -> FRR 2/4
    assert metrics.far_frr(scores, labels, 0.5) == (0.5, 0.5)
    assert metrics.hter(scores, labels, 0.5) == 0.5
    # tau 0.65: FAR {0.9} = 1/4, FRR {0.3, 0.2} = 2/4
    assert metrics.far_frr(scores, labels, 0.65) == (0.25, 0.5)


def test_score_equal_to_tau_is_accepted():
    assert metrics.far_frr([0.5, 0.5], [0, 1], 0.5) == (1.0, 0.0)


def test_min_hter_threshold_separable():
    scores = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
    labels = [0, 0, 0, 1, 1, 1]
    tau = metrics.min_hter_threshold(scores, labels)
    assert 0.3 < tau <= 0.7
    assert metrics.hter(scores, labels, tau) == 0.0
    assert tau == pytest.approx(0.5)  # midway between the scores it separates


def test_min_hter_with_ties():
    scores = [0.5, 0.5, 0.5, 0.5]
    labels = [0, 1, 0, 1]
    tau = metrics.min_hter_threshold(scores, labels)
    assert metrics.hter(scores, labels, tau) == pytest.approx(0.5)


def test_imbalanced_best_threshold_is_not_half():
    rng = np.random.default_rng(0)
    neg = rng.normal(0.75, 0.05, 100)
    pos = rng.normal(0.9, 0.03, 900)
    scores = np.concatenate([neg, pos])
    labels = np.r_[np.zeros(100), np.ones(900)]
    tau = metrics.min_hter_threshold(scores, labels)
    assert tau > 0.75
    assert metrics.hter(scores, labels, tau) < metrics.hter(scores, labels, 0.5)


def test_eer_hand_computed():
    scores = [0.1, 0.2, 0.6, 0.4, 0.8, 0.9]
    labels = [0, 0, 0, 1, 1, 1]
    tau, eer = metrics.eer_threshold(scores, labels)
    far, frr = metrics.far_frr(scores, labels, tau)
    assert far == frr == pytest.approx(1 / 3)
    assert eer == pytest.approx(1 / 3)


def test_auc_hand_computed_and_ties():
    assert metrics.roc_auc([0.1, 0.9], [0, 1]) == 1.0
    assert metrics.roc_auc([0.9, 0.1], [0, 1]) == 0.0
    assert metrics.roc_auc([0.5, 0.5], [0, 1]) == 0.5
    # pairs (neg, pos): (0.1,0.4) ok, (0.1,0.6) ok, (0.5,0.4) bad, (0.5,0.6) ok -> 3/4
    assert metrics.roc_auc([0.1, 0.5, 0.4, 0.6], [0, 0, 1, 1]) == 0.75


def test_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.random(500) + y * 0.3, 2)  # rounding makes ties
    assert metrics.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s))


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0]])
def test_single_class_is_a_clear_error(labels):
    with pytest.raises(ClearfaceError, match="both classes"):
        metrics.hter([0.2] * len(labels), labels, 0.5)
    with pytest.raises(ClearfaceError, match="both classes"):
        metrics.min_hter_threshold([0.2] * len(labels), labels)


def test_bad_inputs():
    with pytest.raises(ClearfaceError, match="0 or 1"):
        metrics.hter([0.1, 0.2], [0, 2], 0.5)
    with pytest.raises(ClearfaceError, match="scores but"):
        metrics.hter([0.1], [0, 1], 0.5)
    with pytest.raises(ClearfaceError, match="NaN"):
        metrics.hter([np.nan, 0.2], [0, 1], 0.5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 1)), min_size=2, max_size=60))
def test_min_hter_is_the_minimum_over_all_thresholds(pairs):
    scores = np.array([p[0] for p in pairs])
    labels = np.array([p[1] for p in pairs])
    if labels.min() == labels.max():
        return
    best = metrics.hter(scores, labels, metrics.min_hter_threshold(scores, labels))
    candidates = np.r_[scores, scores + 1e-9, 2.0, -1.0]
    brute = min(metrics.hter(scores, labels, t) for t in candidates)
    assert best == pytest.approx(brute, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 1)), min_size=2, max_size=60))
def test_error_curves_match_direct_counts(pairs):
    scores = np.array([p[0] for p in pairs])
    labels = np.array([p[1] for p in pairs])
    if labels.min() == labels.max():
        return
    taus, far, frr = metrics.error_curves(scores, labels)
    for t, a, r in zip(taus, far, frr):
        assert (a, r) == pytest.approx(metrics.far_frr(scores, labels, t))


def test_bootstrap_interval_contains_point_estimate():
    rng = np.random.default_rng(2)
    y = (rng.random(2000) < 0.88).astype(int)
    s = rng.random(2000) * 0.5 + y * 0.4
    h = metrics.hter(s, y, 0.5)
    lo, hi = metrics.bootstrap_hter(s, y, 0.5, n_boot=300)
    assert lo <= h <= hi and hi - lo < 0.1


def test_metrics_module_does_not_import_torch():
    import subprocess
    import sys
    code = "import sys, clearface.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_paired_hter_diff_is_the_difference_of_the_two_hters():
    rng = np.random.default_rng(3)
    y = (rng.random(600) < 0.8).astype(int)
    a = np.clip(y * 0.3 + rng.random(600) * 0.7, 0, 1)
    b = np.clip(y * 0.5 + rng.random(600) * 0.5, 0, 1)
    point, lo, hi = metrics.paired_hter_diff(a, 0.5, b, 0.6, y)
    assert point == pytest.approx(metrics.summarize(b, y, 0.6).hter - metrics.summarize(a, y, 0.5).hter)
    assert lo <= point <= hi and hi - lo > 0
    assert metrics.paired_hter_diff(a, 0.5, a, 0.5, y) == (0.0, 0.0, 0.0)  # a model against itself
