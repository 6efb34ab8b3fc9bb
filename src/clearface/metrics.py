"""FAR, FRR, HTER, EER, error curves and ROC AUC in plain numpy (no torch import).

Threshold *rules* (which tau to store) live in :mod:`clearface.calibration`.

Convention: class 1 ("clean face") is the positive, *accepted* class and a higher score means
more likely class 1. An image is predicted 1 when ``score >= tau``:

* FAR = share of class-0 images with ``score >= tau`` (false accepts),
* FRR = share of class-1 images with ``score < tau``  (false rejects),
* HTER = (FAR + FRR) / 2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import ClearfaceError


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ClearfaceError(f"{s.size} scores but {y.size} labels")
    if s.size and not np.isfinite(s).all():
        raise ClearfaceError("scores contain NaN or infinity")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        raise ClearfaceError(f"labels must be 0 or 1; found {y[bad][0]!r}")
    y = y.astype(np.int8)
    n1 = int(y.sum())
    if n1 == 0 or n1 == y.size:
        only = "1" if n1 else "0"
        raise ClearfaceError(
            f"HTER needs both classes, but all {y.size} labels are {only}: FAR or FRR is undefined"
        )
    return s, y


def far_frr(scores, labels, tau: float) -> tuple[float, float]:
    s, y = _check(scores, labels)
    accepted = s >= tau
    far = float(accepted[y == 0].mean())
    frr = float((~accepted[y == 1]).mean())
    return far, frr


def hter(scores, labels, tau: float) -> float:
    far, frr = far_frr(scores, labels, tau)
    return (far + frr) / 2


def error_curves(scores, labels):
    """FAR and FRR at every distinct threshold.

    Returns ``(taus, far, frr)`` where ``taus`` are the sorted distinct scores followed by
    ``+inf`` (reject everything); ``far[i]``/``frr[i]`` are the rates at ``tau = taus[i]``.
    """
    s, y = _check(scores, labels)
    order = np.argsort(s, kind="mergesort")
    s, y = s[order], y[order]
    n1 = int(y.sum())
    n0 = y.size - n1
    distinct, first = np.unique(s, return_index=True)
    # Images strictly below distinct[i] are those before its first occurrence.
    pos_below = np.concatenate([[0], np.cumsum(y)])[first]
    neg_below = first - pos_below
    taus = np.append(distinct, np.inf)
    pos_below = np.append(pos_below, n1)
    neg_below = np.append(neg_below, n0)
    frr = pos_below / n1
    far = (n0 - neg_below) / n0
    return taus, far, frr


def between_scores(taus: np.ndarray, i: int) -> float:
    """A threshold with the same error counts as ``taus[i]`` but away from any score.

    Midway between the score it admits and the next lower score, so that new data scored
    slightly off the calibration scores is not decided by a hair.
    """
    hi = taus[i]
    if i == 0:
        return float(hi) if np.isfinite(hi) else 1.0
    lo = taus[i - 1]
    if not np.isfinite(hi):
        return float(lo) + max(1e-6, abs(float(lo)) * 1e-6)
    mid = float((lo + hi) / 2)
    # adjacent floats (0 and 5e-324, say) have no midpoint: it rounds onto lo, which would admit lo
    return mid if mid > lo else float(hi)


def min_hter_threshold(scores, labels) -> float:
    """The threshold with the lowest HTER on these scores (middle of the best plateau)."""
    taus, far, frr = error_curves(scores, labels)
    h = (far + frr) / 2
    best = np.flatnonzero(np.isclose(h, h.min(), rtol=0, atol=1e-12))
    return between_scores(taus, int(best[len(best) // 2]))


def eer_threshold(scores, labels) -> tuple[float, float]:
    """``(tau, eer)``: the threshold where FAR and FRR are closest, and their mean there."""
    taus, far, frr = error_curves(scores, labels)
    gap = np.abs(far - frr)
    cand = np.flatnonzero(np.isclose(gap, gap.min(), rtol=0, atol=1e-12))
    h = (far[cand] + frr[cand]) / 2
    i = int(cand[np.argmin(h)])
    return between_scores(taus, i), float((far[i] + frr[i]) / 2)


def roc_auc(scores, labels) -> float:
    """Probability that a random class-1 image outscores a random class-0 one (ties count 1/2)."""
    s, y = _check(scores, labels)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # Average ranks over ties (1-based).
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    n1 = int(y.sum())
    n0 = y.size - n1
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


@dataclass
class Summary:
    n: int
    n_pos: int
    n_neg: int
    threshold: float
    far: float
    frr: float
    hter: float
    eer: float
    eer_threshold: float
    auc: float

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(scores, labels, tau: float) -> Summary:
    s, y = _check(scores, labels)
    far, frr = far_frr(s, y, tau)
    eer_tau, eer = eer_threshold(s, y)
    n1 = int(y.sum())
    return Summary(
        n=int(y.size), n_pos=n1, n_neg=int(y.size - n1), threshold=float(tau),
        far=far, frr=frr, hter=(far + frr) / 2, eer=eer, eer_threshold=eer_tau,
        auc=roc_auc(s, y),
    )


def summarize_with_ci(scores, labels, tau: float, n_boot: int = 1000, seed: int = 0) -> dict:
    """:func:`summarize` as a dict plus ``hter_ci95`` (:func:`bootstrap_hter`): how held-out figures are reported."""
    out = summarize(scores, labels, tau).as_dict()
    out["hter_ci95"] = list(bootstrap_hter(scores, labels, tau, n_boot=n_boot, seed=seed))
    return out


def bootstrap_hter(scores, labels, tau: float, n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of HTER at a fixed tau, resampling each class separately."""
    s, y = _check(scores, labels)
    rng = np.random.default_rng(seed)
    acc_neg = (s[y == 0] >= tau).astype(np.float64)
    rej_pos = (s[y == 1] < tau).astype(np.float64)
    far = acc_neg[rng.integers(0, acc_neg.size, (n_boot, acc_neg.size))].mean(1)
    frr = rej_pos[rng.integers(0, rej_pos.size, (n_boot, rej_pos.size))].mean(1)
    h = (far + frr) / 2
    a = (1 - level) / 2
    return float(np.quantile(h, a)), float(np.quantile(h, 1 - a))


def paired_hter_diff(scores_a, tau_a: float, scores_b, tau_b: float, labels, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """HTER(b) - HTER(a) on the same images, each at its own tau, with a percentile interval from
    resampling the images (each class separately) jointly for both: the paired comparison of two models."""
    s_a, y = _check(scores_a, labels)
    s_b, _ = _check(scores_b, labels)
    err_a, err_b = (np.where(y == 0, s >= tau, s < tau).astype(np.float64) for s, tau in ((s_a, tau_a), (s_b, tau_b)))
    d = err_b - err_a  # per-image change in error; HTER difference = mean over class 0 + mean over class 1, halved
    neg, pos = d[y == 0], d[y == 1]
    rng = np.random.default_rng(seed)
    boot = (neg[rng.integers(0, neg.size, (n_boot, neg.size))].mean(1)
            + pos[rng.integers(0, pos.size, (n_boot, pos.size))].mean(1)) / 2
    a = (1 - level) / 2
    return float((neg.mean() + pos.mean()) / 2), float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))
