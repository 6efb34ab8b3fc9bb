"""Open the report in headless Chromium, as a person would, and check the page actually draws."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"),
]


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 3000, timeout: float = 120) -> None:
    """Render ``page`` headless, offline-ish (no background networking), to ``png``."""
    profile = tempfile.mkdtemp(prefix="cf-chromium-")
    try:
        cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={width},{height}", page.resolve().as_uri()]
        subprocess.run(cmd, check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "HOME": profile})
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_report_renders_in_chromium(real_small, tiny_model_file, tmp_path):
    from PIL import Image

    from clearface.report import build_report
    zip_path, labels_path, _ = real_small
    out = tmp_path / "report"
    build_report(tiny_model_file, zip_path, labels_path, out, engine="torch", n_boot=100)
    png = tmp_path / "shot.png"
    screenshot(out / "index.html", png)
    assert png.is_file() and png.stat().st_size > 10_000
    with Image.open(png) as im:
        assert im.size == (1280, 3000)
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    gray = rgb.mean(2)
    assert gray.std() > 15, "screenshot is (nearly) blank"
    assert (gray < 200).mean() > 0.02, "hardly anything drawn"
    # Colour, not just text: the figures and face thumbnails rendered (broken images draw no colour).
    saturation = rgb.max(2) - rgb.min(2)
    assert (saturation > 60).mean() > 0.01
    # The top band (title, headline cards) is not empty.
    assert gray[:400].std() > 10
