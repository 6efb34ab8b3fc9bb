"""Threshold rules: choose tau on validation scores, apply it, and report it the one way.

A rule is a registered function ``(scores, labels, value) -> tau``; its name, optionally with a
parameter (``far_at:0.01``), is what ``--threshold-rule`` and the ``threshold_method`` setting
take and what a model file stores. :func:`fit_threshold` runs a rule.

The split follows scikit-learn's ``TunedThresholdClassifierCV`` / ``FixedThresholdClassifier``:
:class:`ThresholdChooser` picks tau on labelled validation scores and returns a
:class:`FixedThreshold`, which only applies it. :func:`choose_and_score` is the protocol every
command uses to report a tau: choose on validation, score the held-out part at that tau, with a
bootstrap interval, and say which data did what.

Adding a rule is one decorated function here (and its test).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import metrics
from .errors import ClearfaceError


@dataclass(frozen=True)
class Rule:
    name: str
    fit: Callable  # (scores, labels, value) -> tau
    help: str
    takes_value: bool = False


RULES: dict[str, Rule] = {}


def register_rule(name: str, help: str, takes_value: bool = False):
    def wrap(fn: Callable) -> Callable:
        if name in RULES:
            raise ValueError(f"threshold rule {name!r} is registered twice")
        RULES[name] = Rule(name, fn, help, takes_value)
        return fn
    return wrap


def rule_names() -> list[str]:
    """The rules as they are spelled on the command line (``far_at:<x>`` for those with a value)."""
    return [f"{r.name}:<x>" if r.takes_value else r.name for r in RULES.values()]


def parse_rule(text) -> tuple[Rule, float | None]:
    """``"far_at:0.01"`` -> (the far_at rule, 0.01); unknown names and bad values are one-line errors."""
    name, _, raw = str(text).partition(":")
    rule = RULES.get(name)
    if rule is None:
        raise ClearfaceError(f"unknown threshold rule {text!r}; choose from {', '.join(rule_names())}")
    if not rule.takes_value:
        if raw:
            raise ClearfaceError(f"threshold rule {name!r} takes no value (got {text!r})")
        return rule, None
    value = float(raw) if re.fullmatch(r"\d*\.?\d+(e-?\d+)?", raw) else math.nan
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ClearfaceError(f"threshold rule {text!r}: give a rate between 0 and 1, e.g. {name}:0.01")
    return rule, value


def check_rule(text) -> str:
    """``text`` if it names a rule (for argparse ``type=`` and settings validation)."""
    parse_rule(text)
    return str(text)


def fit_threshold(scores, labels, rule: str = "min_hter") -> float:
    """tau chosen by ``rule`` on labelled ``scores`` (predict 1 when ``score >= tau``)."""
    r, value = parse_rule(rule)
    return float(r.fit(scores, labels, value))


# ---------------------------------------------------------------------------- the rules

@register_rule("min_hter", "lowest HTER = (FAR + FRR) / 2 (middle of the best plateau)")
def _min_hter(scores, labels, value=None) -> float:
    return metrics.min_hter_threshold(scores, labels)


@register_rule("eer", "equal error rate: where FAR and FRR are closest")
def _eer(scores, labels, value=None) -> float:
    return metrics.eer_threshold(scores, labels)[0]


def far_index(far: np.ndarray, target: float) -> int:
    """Lowest threshold (index into ``error_curves``) with FAR <= target: the lowest FRR there."""
    return int(np.flatnonzero(far <= target + 1e-12)[0])  # far[-1] == 0: there is always one


def frr_index(frr: np.ndarray, target: float) -> int:
    """Highest threshold with FRR <= target: the lowest FAR there."""
    return int(np.flatnonzero(frr <= target + 1e-12)[-1])  # frr[0] == 0


def _held_at(index_of, curve: int):
    """A rule holding one error rate (``curve``: 1 FAR, 2 FRR of ``error_curves``) at most at the value."""
    def fit(scores, labels, value) -> float:
        curves = metrics.error_curves(scores, labels)
        return metrics.between_scores(curves[0], index_of(curves[curve], value))
    return fit


register_rule("far_at", "FAR held at most x (e.g. far_at:0.01), the lowest FRR there", True)(_held_at(far_index, 1))
register_rule("frr_at", "FRR held at most x (e.g. frr_at:0.01), the lowest FAR there", True)(_held_at(frr_index, 2))


@register_rule("far_1pct", "lowest FRR with FAR <= 1 %")
def _far_1pct(scores, labels, value=None) -> float:
    return fit_threshold(scores, labels, "far_at:0.01")


# ---------------------------------------------------------------------------- choose / apply

@dataclass(frozen=True)
class FixedThreshold:
    """Applies a tau chosen elsewhere (``FixedThresholdClassifier``): 1 where ``score >= threshold``."""

    threshold: float
    rule: str | None = None
    source: str | None = None

    def predict(self, scores) -> np.ndarray:
        return labels_from_scores(scores, self.threshold)


@dataclass(frozen=True)
class ThresholdChooser:
    """Chooses tau on labelled validation scores (``TunedThresholdClassifierCV``)."""

    rule: str = "min_hter"

    def __post_init__(self):
        check_rule(self.rule)

    def fit(self, scores, labels, source: str | None = None) -> FixedThreshold:
        return FixedThreshold(fit_threshold(scores, labels, self.rule), self.rule, source)


def labels_from_scores(scores, threshold: float) -> np.ndarray:
    """0/1 labels: 1 where ``score >= threshold`` (class 1 is the accepted class)."""
    return (np.asarray(scores) >= threshold).astype(np.int8)


def choose_and_score(val_scores, val_labels, rule: str, source: str, test_scores=None, test_labels=None,
                     n_boot: int = 1000, seed: int = 0) -> dict:
    """The protocol: tau chosen by ``rule`` on the validation scores (described by ``source``),
    the validation summary there, and, given held-out scores, their summary at that tau with a
    bootstrap interval and a sentence saying which data chose tau and which scored it."""
    fixed = ThresholdChooser(rule).fit(val_scores, val_labels, source)
    result = {"threshold": fixed.threshold, "threshold_method": rule, "threshold_source": source,
              "val": metrics.summarize(val_scores, val_labels, fixed.threshold).as_dict()}
    if test_scores is not None and len(test_scores):
        result["test"] = metrics.summarize_with_ci(test_scores, test_labels, fixed.threshold, n_boot=n_boot, seed=seed)
        result["test_protocol"] = (f"tau chosen on the {source}; scored on the {len(test_scores)}-image held-out "
                                   "part (never trained or calibrated on)")
    return result


# ---------------------------------------------------------------------------- operating points

FAR_TARGETS = (0.001, 0.01, 0.05, 0.1)
FRR_TARGETS = (0.001, 0.01, 0.05, 0.1)


def operating_points(scores, labels, far_targets=FAR_TARGETS, frr_targets=FRR_TARGETS) -> list[dict]:
    """The other error rate when one is held at a target (the ``far_at``/``frr_at`` rules'
    points, with the exact score where they sit; None for 'reject everything')."""
    taus, far, frr = metrics.error_curves(scores, labels)
    rows = []
    for fixed, targets, index in (("FAR", far_targets, lambda t: far_index(far, t)),
                                  ("FRR", frr_targets, lambda t: frr_index(frr, t))):
        for target in targets:
            i = index(target)
            rows.append({"fixed": fixed, "target": target, "threshold": float(taus[i]) if np.isfinite(taus[i]) else None,
                         "far": float(far[i]), "frr": float(frr[i]), "hter": float((far[i] + frr[i]) / 2)})
    return rows
