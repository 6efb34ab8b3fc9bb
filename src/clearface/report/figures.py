"""The report's figures: matplotlib on the Agg canvas (``Figure`` objects, no pyplot state) to PNG.

Every function takes plain numpy arrays and a path, draws one figure and writes it; nothing
here scores images. Curves come from :func:`clearface.metrics.error_curves`, so the plots and
the numbers in ``metrics.json`` are the same computation. Axes and colours: :mod:`.axes`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import metrics
from .axes import (C_EER, C_HALF, C_HOLD, C_HTER, C_NEG, C_POS, C_TAU, LOGIT_EPS, det_limits, det_ticks,
                   finish, finite_taus, logit_x, new_figure, probit, save, score_limits, score_scale,
                   style, to_axis)


def roc_figure(scores, labels, tau: float, path: Path) -> Path:
    taus, far, frr = metrics.error_curves(scores, labels)
    auc = metrics.roc_auc(scores, labels)
    far_t, frr_t = metrics.far_frr(scores, labels, tau)
    fig, ax = new_figure()
    ax.plot(far[::-1], 1 - frr[::-1], color=C_POS, lw=1.8, label=f"model (AUC = {auc:.4f})")
    ax.plot([0, 1], [0, 1], color=C_HALF, lw=1, ls=":", label="chance (AUC = 0.5)")
    ax.plot([far_t], [1 - frr_t], "o", color=C_TAU, ms=7, label=f"stored tau = {tau:.4g}")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false accept rate (occluded faces accepted)")
    ax.set_ylabel("true accept rate = 1 - FRR")
    return finish(fig, ax, path, "ROC curve", loc="lower right", frameon=False)


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
    fig, ax = new_figure(5.6, 4.6)
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
    return finish(fig, ax, path, "DET curve", loc="upper right", frameon=True, framealpha=0.9, fontsize=8)


def error_vs_tau_figure(scores, labels, tau: float, path: Path) -> Path:
    taus, far, frr = metrics.error_curves(scores, labels)
    # From tau = 0 (accept everything) to just past the top score (reject everything).
    t = np.concatenate([[0.0], finite_taus(taus)])
    far, frr = np.concatenate([[1.0], far]), np.concatenate([[0.0], frr])
    hter = (far + frr) / 2
    eer_tau, eer = metrics.eer_threshold(scores, labels)
    scale = score_scale(scores)
    x = to_axis(t, scale)
    fig, ax = new_figure(6.4, 4.4)
    ax.plot(x, far, color=C_NEG, lw=1.5, drawstyle="steps-post", label="FAR")
    ax.plot(x, frr, color=C_POS, lw=1.5, drawstyle="steps-post", label="FRR")
    ax.plot(x, hter, color=C_HTER, lw=2.0, drawstyle="steps-post", label="HTER")
    h_tau = metrics.hter(scores, labels, tau)
    ax.axvline(to_axis(tau, scale), color=C_TAU, lw=1.4, ls="--", label=f"stored tau {tau:.4g} (HTER {100 * h_tau:.2f} %)")
    ax.axvline(to_axis(0.5, scale), color=C_HALF, lw=1, ls=":", label="tau 0.5")
    ax.plot([to_axis(eer_tau, scale)], [eer], "D", color=C_EER, ms=7, mec="white", mew=0.8,
            label=f"EER {100 * eer:.2f} % at {eer_tau:.4g}")
    if scale == "logit":
        logit_x(ax, "threshold tau (logit scale: the ends of [0, 1] stretched)")
    else:
        lo, hi = score_limits(scores, tau, 0.5, eer_tau)
        ax.set_xlim(lo, hi)
        ax.set_xlabel("threshold tau" + ("" if (lo, hi) == (0.0, 1.0) else " (zoomed to where the scores are)"))
    ax.set_ylim(-0.01, 1.01)
    ax.set_ylabel("error rate")
    return finish(fig, ax, path, "FAR, FRR and HTER against the threshold")


def histogram_figure(scores, labels, tau: float, path: Path, bins: int = 60) -> Path:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    scale = score_scale(s)
    if scale == "logit":
        z = np.linspace(np.log(LOGIT_EPS / (1 - LOGIT_EPS)), np.log((1 - LOGIT_EPS) / LOGIT_EPS), bins + 1)
        edges = 1 / (1 + np.exp(-z))
    else:
        lo, hi = score_limits(s, tau)
        edges = np.linspace(lo, hi, bins + 1)
    fig, ax = new_figure(6.4, 4.4)
    for cls, colour, name in ((0, C_NEG, "class 0 (occluded)"), (1, C_POS, "class 1 (clean)")):
        v = np.clip(to_axis(s[y == cls], scale), edges[0], edges[-1])  # every image counts
        if not v.size:
            continue
        w = np.full(v.size, 1 / v.size)
        ax.hist(v, bins=edges, weights=w, histtype="stepfilled", alpha=0.35, color=colour)
        ax.hist(v, bins=edges, weights=w, histtype="step", lw=1.5, color=colour, label=f"{name}, n = {v.size}")
    ax.axvline(to_axis(tau, scale), color=C_TAU, lw=1.4, ls="--", label=f"stored tau {tau:.4g}")
    ax.set_yscale("log")
    if scale == "logit":
        logit_x(ax, "score = P(clean face) (logit scale)")
    else:
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel("score = P(clean face)" + ("" if (edges[0], edges[-1]) == (0.0, 1.0) else " (zoomed)"))
    ax.set_ylabel("share of the class (log scale)")
    return finish(fig, ax, path, "Score distribution per class")


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
    fig, ax = new_figure(4.8, 4.0)
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
    return save(fig, path)


# ---------------------------------------------------------------------------- training curves

def training_figure(summary: dict[str, np.ndarray], path: Path) -> Path:
    ep = summary["epoch"]
    fig, (a1, a2) = new_figure(11.0, 3.9, ncols=2)
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
        style(a)
        if ep.size <= 20:
            a.set_xticks(ep)
    return save(fig, path)
