"""Render ``report.html`` (Jinja2, autoescaped) from the report's result dict."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEMPLATES = Path(__file__).parent / "templates"


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and not np.isfinite(v))


def pct(v, digits: int = 2) -> str:
    return "–" if _missing(v) else f"{100 * float(v):.{digits}f} %"


def num(v, digits: int = 4) -> str:
    return "–" if _missing(v) else f"{float(v):.{digits}f}"


def _environment():
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = pct
    env.filters["num"] = num
    return env


def render(result: dict, summary: dict | None = None) -> str:
    from .. import __version__
    recorded = []
    for part, m in (result.get("recorded_metrics") or {}).items():
        if isinstance(m, dict) and "hter" in m:
            recorded.append({"part": part, **{k: m.get(k) for k in
                             ("n", "n_pos", "n_neg", "threshold", "far", "frr", "hter", "eer", "auc")}})
    epochs = []
    if summary is not None:
        for i in range(len(summary["epoch"])):
            epochs.append({k: (float(v[i]) if np.isfinite(v[i]) else None) for k, v in summary.items()})
    return _environment().get_template("report.html").render(
        r=result, h=result["headline"], half=result["at_tau_0_5"], recorded=recorded, epochs=epochs,
        version=__version__)
