"""Open the report in headless Chromium, as a person would: every image loads, and the page draws."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from headless_chromium import CHROMIUM, chromium, console_errors, images_state

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def report_dir(real_small, tiny_model_file, tmp_path_factory):
    from clearface.report import build_report
    zip_path, labels_path, _ = real_small
    out = tmp_path_factory.mktemp("browser_report") / "report"
    build_report(tiny_model_file, zip_path, labels_path, out, engine="torch", n_boot=100)
    return out


def _loaded(driver, page: Path):
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    # Gallery thumbnails are loading="lazy": make them load now, as scrolling through the page would.
    driver.execute_script("Array.from(document.images).forEach(function (i) { i.loading = 'eager'; });")
    WebDriverWait(driver, 30).until(lambda d: all(complete for _, complete, _ in images_state(d)))
    return images_state(driver)


def test_every_report_image_loads(report_dir, tmp_path):
    with chromium(tmp_path / "profile") as driver:
        state = _loaded(driver, report_dir / "index.html")
        srcs = [s for s, _, _ in state]
        assert any(s.startswith("figures/") for s in srcs) and any(s.startswith("img/") for s in srcs), srcs
        broken = [s for s, complete, width in state if not (complete and width > 0)]
        assert not broken, broken
        assert console_errors(driver) == []

        # The same check on a copy with the figures deleted finds exactly those images broken:
        # this test can fail.
        damaged = tmp_path / "damaged"
        shutil.copytree(report_dir, damaged)
        shutil.rmtree(damaged / "figures")
        state = _loaded(driver, damaged / "index.html")
        broken = sorted({s for s, complete, width in state if not (complete and width > 0)})
        assert broken and broken == sorted({s for s, _, _ in state if s.startswith("figures/")})
        console_errors(driver)  # drain: the missing files were logged, as they should be


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


def test_report_renders_in_chromium(report_dir, tmp_path):
    from PIL import Image
    png = tmp_path / "shot.png"
    screenshot(report_dir / "index.html", png)
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
