"""Headless Chromium through selenium for the browser tests: one place for the flags and the skip."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000")


def driver_path() -> str | None:
    for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver", shutil.which("chromedriver")):
        if p and Path(p).exists():
            return p
    return None


@contextmanager
def chromium(profile_dir, extra_flags=()):
    """A selenium Chrome driver on /usr/bin/chromium that records the console (``get_log('browser')``)."""
    path = driver_path()
    if not CHROMIUM.exists() or path is None:
        pytest.skip("headless Chromium or chromedriver not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in FLAGS + tuple(extra_flags) + (f"--user-data-dir={profile_dir}",):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(path), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list[str]:
    """Console messages at error level since the last call (the log is drained by reading it)."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def images_state(driver) -> list[tuple[str, bool, int]]:
    """Every ``<img>`` of the page: ``(src attribute, complete, naturalWidth)``."""
    return [tuple(x) for x in driver.execute_script(
        "return Array.from(document.images).map(function (i) {"
        " return [i.getAttribute('src'), i.complete, i.naturalWidth]; });")]
