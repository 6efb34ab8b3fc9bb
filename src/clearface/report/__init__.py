"""The HTML report: :func:`build_report` (building in :mod:`.build`, galleries and Grad-CAM pairs
in :mod:`.galleries`, figures in :mod:`.figures`, the page in :mod:`.html`)."""

from .build import build_report

__all__ = ["build_report"]
