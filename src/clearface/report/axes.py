"""Drawing helpers shared by the report's figures: colours, DET and logit axes, figure set-up.

Matplotlib on the Agg canvas (``Figure`` objects, no pyplot state); imported lazily.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


LOGIT_EPS = 1e-4


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


def legend_below(ax, ncols: int = 3):
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), ncols=ncols, frameon=False, fontsize=8.5)


def to_axis(values, scale: str):
    v = np.asarray(values, dtype=np.float64)
    return np.clip(v, LOGIT_EPS, 1 - LOGIT_EPS) if scale == "logit" else v


LOGIT_TICKS = (0.0001, 0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)


def logit_x(ax, label: str):
    """Logit x-axis with plain decimal tick labels (not matplotlib's '1 - 10^-2')."""
    ax.set_xscale("logit")
    ax.set_xticks(LOGIT_TICKS, [f"{t:g}" for t in LOGIT_TICKS])
    ax.xaxis.set_minor_formatter(null_formatter())
    ax.set_xlim(LOGIT_EPS * 0.8, 1 - LOGIT_EPS * 0.8)
    ax.set_xlabel(label)


def null_formatter():
    from matplotlib.ticker import NullFormatter
    return NullFormatter()


def new_figure(w=6.0, h=4.0, ncols=1):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def style(ax):
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def finish(fig, ax, path: Path, title: str, **legend) -> Path:
    """Title, legend (``legend`` options, else below the axes), house style; write the PNG."""
    ax.set_title(title)
    if legend:
        ax.legend(**legend)
    else:
        legend_below(ax)
    style(ax)
    return save(fig, path)


def finite_taus(taus: np.ndarray) -> np.ndarray:
    """The ``+inf`` 'reject everything' threshold drawn just right of the top score (or at 1)."""
    t = taus.astype(np.float64).copy()
    top = t[-2] if t.size > 1 else 0.0
    t[-1] = max(1.0, top + 1e-6)
    return t
