"""The report's figures: matplotlib on the Agg canvas (``Figure`` objects, no pyplot state) to PNG.

Every function takes plain numpy arrays and a path, draws one figure and writes it; nothing
here scores images. Curves come from :func:`clearface.metrics.error_curves`, so the plots and
the numbers in ``metrics.json`` are the same computation.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .. import metrics
from ..errors import ClearfaceError

# Colours (Okabe-Ito, readable for colour-blind viewers).
C_NEG = "#D55E00"   # class 0, occluded / FAR
C_POS = "#0072B2"   # class 1, clean / FRR
C_HTER = "#333333"
C_TAU = "#009E73"
C_HALF = "#999999"
C_EER = "#CC79A7"
C_HOLD = "#E69F00"

# Candidate DET ticks (error rates as fractions); labelled in percent.
DET_TICKS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4,
             0.6, 0.8, 0.9, 0.95, 0.98, 0.99)
DPI = 110


# ---------------------------------------------------------------------------- helpers

def probit(p):
    """Normal deviate of a probability (the DET axis transform): ``Phi^-1(p)``; 0 -> -inf, 1 -> +inf."""
    from scipy.special import ndtri
    return ndtri(np.asarray(p, dtype=np.float64))


def percent_label(p: float) -> str:
    """0.001 -> '0.1', 0.05 -> '5', 0.4 -> '40' (percent, no trailing zeros)."""
    v = p * 100
    return f"{v:.4f}".rstrip("0").rstrip(".")


def det_limits(n_neg: int, n_pos: int, eer: float) -> tuple[float, float]:
    """Error-rate range of the DET axes: down to about one error in the smaller class, up to
    40 % (60 % or 99 % when the model is weak enough to need it)."""
    lo = min(max(1 / max(min(n_neg, n_pos), 1), 1e-4), 1e-2)  # one error in the smaller class
    lo = max(t for t in DET_TICKS if t <= lo) if lo >= DET_TICKS[0] else DET_TICKS[0]
    hi = 0.6 if eer < 0.25 else 0.99
    return lo, hi


DET_MAJOR = (0.0001, 0.001, 0.01, 0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 0.99)


def det_ticks(lo: float, hi: float, min_gap: float | None = None) -> tuple[np.ndarray, list[str]]:
    """Tick positions (probit units) and their percent labels for a DET axis from lo to hi.

    Round rates (0.1, 1, 5, 20, 40 % ...) first, then the others where they are at least
    ``min_gap`` probit units (default: a twelfth of the axis) from every tick already placed.
    """
    if min_gap is None:
        min_gap = float(probit(hi) - probit(lo)) / 12
    chosen: list[float] = []
    for t in [t for t in DET_MAJOR if lo <= t <= hi] + [t for t in DET_TICKS if lo <= t <= hi]:
        if t not in chosen and all(abs(float(probit(t) - probit(c))) >= min_gap for c in chosen):
            chosen.append(t)
    chosen.sort()
    return probit(chosen), [percent_label(t) for t in chosen]


def score_scale(scores) -> str:
    """'logit' when most scores sit at the ends of [0, 1] (a confident model), else 'linear'."""
    s = np.asarray(scores, dtype=np.float64)
    ends = np.mean((s < 0.02) | (s > 0.98)) if s.size else 0.0
    return "logit" if ends > 0.5 else "linear"


_LOGIT_EPS = 1e-4


def score_limits(scores, *marks) -> tuple[float, float]:
    """Linear x-range for score plots: the bulk of the scores and the marked taus, padded, within [0, 1]."""
    s = np.asarray(scores, dtype=np.float64)
    lo, hi = np.quantile(s, [0.001, 0.999]) if s.size else (0.0, 1.0)
    lo, hi = min([lo, *marks]), max([hi, *marks])
    pad = max(hi - lo, 0.02) * 0.06
    lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)
    if lo < 0.1:
        lo = 0.0
    if hi > 0.9:
        hi = 1.0
    return float(lo), float(hi)


def _legend_below(ax, ncols: int = 3):
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), ncols=ncols, frameon=False, fontsize=8.5)


def _to_axis(values, scale: str):
    v = np.asarray(values, dtype=np.float64)
    return np.clip(v, _LOGIT_EPS, 1 - _LOGIT_EPS) if scale == "logit" else v


LOGIT_TICKS = (0.0001, 0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)


def _logit_x(ax, label: str):
    """Logit x-axis with plain decimal tick labels (not matplotlib's '1 - 10^-2')."""
    ax.set_xscale("logit")
    ax.set_xticks(LOGIT_TICKS, [f"{t:g}" for t in LOGIT_TICKS])
    ax.xaxis.set_minor_formatter(_null_formatter())
    ax.set_xlim(_LOGIT_EPS * 0.8, 1 - _LOGIT_EPS * 0.8)
    ax.set_xlabel(label)


def _null_formatter():
    from matplotlib.ticker import NullFormatter
    return NullFormatter()


def _new_figure(w=6.0, h=4.0, ncols=1):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def _style(ax):
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _finite_taus(taus: np.ndarray) -> np.ndarray:
    """The ``+inf`` 'reject everything' threshold drawn just right of the top score (or at 1)."""
    t = taus.astype(np.float64).copy()
    top = t[-2] if t.size > 1 else 0.0
    t[-1] = max(1.0, top + 1e-6)
    return t


# ---------------------------------------------------------------------------- figures

def roc_figure(scores, labels, tau: float, path: Path) -> Path:
    taus, far, frr = metrics.error_curves(scores, labels)
    auc = metrics.roc_auc(scores, labels)
    far_t, frr_t = metrics.far_frr(scores, labels, tau)
    fig, ax = _new_figure()
    ax.plot(far[::-1], 1 - frr[::-1], color=C_POS, lw=1.8, label=f"model (AUC = {auc:.4f})")
    ax.plot([0, 1], [0, 1], color=C_HALF, lw=1, ls=":", label="chance (AUC = 0.5)")
    ax.plot([far_t], [1 - frr_t], "o", color=C_TAU, ms=7, label=f"stored tau = {tau:.4g}")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false accept rate (occluded faces accepted)")
    ax.set_ylabel("true accept rate = 1 - FRR")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right", frameon=False)
    _style(ax)
    return _save(fig, path)


def det_figure(scores, labels, tau: float, path: Path) -> Path:
    taus, far, frr = metrics.error_curves(scores, labels)
    eer_tau, eer = metrics.eer_threshold(scores, labels)
    y = np.asarray(labels)
    n_pos = int((y == 1).sum())
    lo, hi = det_limits(y.size - n_pos, n_pos, eer)
    # Rates of 0 (or 1) have no normal deviate: push them just outside the axes, not onto them.
    clip_lo, clip_hi = lo / 4, 1 - (1 - hi) / 4
    fx = probit(np.clip(far, clip_lo, clip_hi))
    fy = probit(np.clip(frr, clip_lo, clip_hi))
    fig, ax = _new_figure(5.6, 4.6)
    ax.plot(fx, fy, color=C_POS, lw=1.8, label="model")
    diag = probit([lo, hi])
    ax.plot(diag, diag, color=C_HALF, lw=1, ls=":", label="FAR = FRR")
    far_t, frr_t = metrics.far_frr(scores, labels, tau)
    far_h, frr_h = metrics.far_frr(scores, labels, 0.5)
    pts = [(far_t, frr_t, "o", C_TAU, f"stored tau {tau:.4g}", 9, 5),
           (far_h, frr_h, "s", C_HALF, "tau 0.5", 7, 4),
           (eer, eer, "D", C_EER, f"EER {100 * eer:.2f} %", 6, 4)]
    for fa, fr, marker, colour, label, ms, z in pts:
        ax.plot(probit(np.clip(fa, clip_lo, clip_hi)), probit(np.clip(fr, clip_lo, clip_hi)), marker,
                color=colour, ms=ms, label=label, mec="white", mew=0.8, zorder=z)
    pos, lab = det_ticks(lo, hi)
    ax.set_xticks(pos, lab)
    ax.set_yticks(pos, lab)
    lim = probit([lo, hi])
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_aspect("equal")
    ax.set_xlabel("false accept rate (%), normal-deviate scale")
    ax.set_ylabel("false reject rate (%), normal-deviate scale")
    ax.set_title("DET curve")
    ax.legend(loc="upper right", frameon=True, framealpha=0.9, fontsize=8)
    _style(ax)
    return _save(fig, path)


def error_vs_tau_figure(scores, labels, tau: float, path: Path) -> Path:
    taus, far, frr = metrics.error_curves(scores, labels)
    # From tau = 0 (accept everything) to just past the top score (reject everything).
    t = np.concatenate([[0.0], _finite_taus(taus)])
    far, frr = np.concatenate([[1.0], far]), np.concatenate([[0.0], frr])
    hter = (far + frr) / 2
    eer_tau, eer = metrics.eer_threshold(scores, labels)
    scale = score_scale(scores)
    x = _to_axis(t, scale)
    fig, ax = _new_figure(6.4, 4.4)
    ax.plot(x, far, color=C_NEG, lw=1.5, drawstyle="steps-post", label="FAR")
    ax.plot(x, frr, color=C_POS, lw=1.5, drawstyle="steps-post", label="FRR")
    ax.plot(x, hter, color=C_HTER, lw=2.0, drawstyle="steps-post", label="HTER")
    h_tau = metrics.hter(scores, labels, tau)
    ax.axvline(_to_axis(tau, scale), color=C_TAU, lw=1.4, ls="--", label=f"stored tau {tau:.4g} (HTER {100 * h_tau:.2f} %)")
    ax.axvline(_to_axis(0.5, scale), color=C_HALF, lw=1, ls=":", label="tau 0.5")
    ax.plot([_to_axis(eer_tau, scale)], [eer], "D", color=C_EER, ms=7, mec="white", mew=0.8,
            label=f"EER {100 * eer:.2f} % at {eer_tau:.4g}")
    if scale == "logit":
        _logit_x(ax, "threshold tau (logit scale: the ends of [0, 1] stretched)")
    else:
        lo, hi = score_limits(scores, tau, 0.5, eer_tau)
        ax.set_xlim(lo, hi)
        ax.set_xlabel("threshold tau" + ("" if (lo, hi) == (0.0, 1.0) else " (zoomed to where the scores are)"))
    ax.set_ylim(-0.01, 1.01)
    ax.set_ylabel("error rate")
    ax.set_title("FAR, FRR and HTER against the threshold")
    _legend_below(ax)
    _style(ax)
    return _save(fig, path)


def histogram_figure(scores, labels, tau: float, path: Path, bins: int = 60) -> Path:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    scale = score_scale(s)
    if scale == "logit":
        z = np.linspace(np.log(_LOGIT_EPS / (1 - _LOGIT_EPS)), np.log((1 - _LOGIT_EPS) / _LOGIT_EPS), bins + 1)
        edges = 1 / (1 + np.exp(-z))
    else:
        lo, hi = score_limits(s, tau)
        edges = np.linspace(lo, hi, bins + 1)
    fig, ax = _new_figure(6.4, 4.4)
    for cls, colour, name in ((0, C_NEG, "class 0 (occluded)"), (1, C_POS, "class 1 (clean)")):
        v = np.clip(_to_axis(s[y == cls], scale), edges[0], edges[-1])  # every image counts
        if not v.size:
            continue
        w = np.full(v.size, 1 / v.size)
        ax.hist(v, bins=edges, weights=w, histtype="stepfilled", alpha=0.35, color=colour)
        ax.hist(v, bins=edges, weights=w, histtype="step", lw=1.5, color=colour, label=f"{name}, n = {v.size}")
    ax.axvline(_to_axis(tau, scale), color=C_TAU, lw=1.4, ls="--", label=f"stored tau {tau:.4g}")
    ax.set_yscale("log")
    if scale == "logit":
        _logit_x(ax, "score = P(clean face) (logit scale)")
    else:
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel("score = P(clean face)" + ("" if (edges[0], edges[-1]) == (0.0, 1.0) else " (zoomed)"))
    ax.set_ylabel("share of the class (log scale)")
    ax.set_title("Score distribution per class")
    _legend_below(ax)
    _style(ax)
    return _save(fig, path)


def confusion_counts(scores, labels, tau: float) -> dict:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    acc = s >= tau
    return {"tn": int((~acc & (y == 0)).sum()), "fp": int((acc & (y == 0)).sum()),
            "fn": int((~acc & (y == 1)).sum()), "tp": int((acc & (y == 1)).sum())}


def confusion_figure(scores, labels, tau: float, path: Path) -> Path:
    c = confusion_counts(scores, labels, tau)
    m = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]], dtype=np.float64)
    rows = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = _new_figure(4.8, 4.0)
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    names = [["correct reject", "FALSE ACCEPT"], ["FALSE REJECT", "correct accept"]]
    for i in range(2):
        for j in range(2):
            dark = rows[i, j] > 0.55
            ax.text(j, i, f"{names[i][j]}\n{int(m[i, j])}\n{100 * rows[i, j]:.2f} % of row", ha="center",
                    va="center", fontsize=10, color="white" if dark else "#222222",
                    fontweight="bold" if i != j else "normal")
    ax.set_xticks([0, 1], ["predicted 0\n(rejected)", "predicted 1\n(accepted)"])
    ax.set_yticks([0, 1], ["true 0\noccluded", "true 1\nclean"])
    ax.set_title(f"Confusion matrix at tau = {tau:.4g}")
    for side in ax.spines.values():
        side.set_visible(False)
    return _save(fig, path)


# ---------------------------------------------------------------------------- training curves

SUMMARY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_hter")


def read_summary(path) -> dict[str, np.ndarray]:
    """RUN_DIR/summary.csv as columns of floats (missing or empty cells -> NaN)."""
    p = Path(path)
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


def training_figure(summary: dict[str, np.ndarray], path: Path) -> Path:
    ep = summary["epoch"]
    fig, (a1, a2) = _new_figure(11.0, 3.9, ncols=2)
    a1.plot(ep, summary["train_loss"], "o-", color=C_POS, ms=3, lw=1.5, label="training loss")
    a1.plot(ep, summary["val_loss"], "o-", color=C_NEG, ms=3, lw=1.5, label="validation loss")
    a1.set_xlabel("epoch")
    a1.set_ylabel("loss")
    a1.set_title("Loss per epoch")
    a1.legend(frameon=False)
    h = summary["val_hter"]
    a2.plot(ep, h, "o-", color=C_HTER, ms=3, lw=2, label="validation HTER")
    for key, colour, name in (("val_far", C_NEG, "validation FAR"), ("val_frr", C_POS, "validation FRR"),
                              ("val_eer", C_EER, "validation EER")):
        if key in summary and np.isfinite(summary[key]).any():
            a2.plot(ep, summary[key], ls=":" if key != "val_eer" else "--", color=colour, lw=1.2, label=name)
    if "holdout_hter" in summary and np.isfinite(summary["holdout_hter"]).any():
        a2.plot(ep, summary["holdout_hter"], "s-", color=C_HOLD, ms=3, lw=1.5, label="held-out HTER (at the val tau)")
    if np.isfinite(h).any():
        b = int(np.nanargmin(h))
        a2.plot([ep[b]], [h[b]], "*", color=C_TAU, ms=13, mec="white", label=f"best: epoch {int(ep[b])}, {100 * h[b]:.2f} %")
    a2.set_xlabel("epoch")
    a2.set_ylabel("error rate")
    a2.set_ylim(bottom=0)
    a2.set_title("Validation error per epoch (at each epoch's own tau)")
    a2.legend(frameon=False, fontsize=8)
    for a in (a1, a2):
        _style(a)
        if ep.size <= 20:
            a.set_xticks(ep)
    return _save(fig, path)
