"""The web page in headless Chromium: `clearface serve` on 127.0.0.1, upload real images, read the labels."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import real_slice

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")


def _driver_path() -> str | None:
    for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver", shutil.which("chromedriver")):
        if p and Path(p).exists():
            return p
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model_file, tmp_path_factory):
    httpx = pytest.importorskip("httpx")
    port = _free_port()
    env = dict(os.environ, CLEARFACE_CACHE_DIR=str(tmp_path_factory.mktemp("browser_cache")))
    log = tmp_path_factory.mktemp("browser_log") / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "clearface.cli", "serve", "--model", str(tiny_model_file),
                                 "--host", "127.0.0.1", "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT,
                                env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver_path = _driver_path()
    if not CHROMIUM.exists() or driver_path is None:
        pytest.skip("headless Chromium or chromedriver not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_for(driver, css, timeout=60):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))


def test_page_labels_uploaded_images(server, browser, tmp_path):
    import httpx
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    blobs, _ = real_slice(1, start=2000)
    face = tmp_path / "face.jpg"
    face.write_bytes(blobs[0])
    api = httpx.post(server + "predict", files={"file": ("face.jpg", blobs[0])}).json()[0]

    browser.get(server)
    WebDriverWait(browser, 30).until(lambda d: "threshold" in d.find_element(By.ID, "model").text)
    assert "cfnet_tiny" in browser.find_element(By.ID, "model").text

    browser.find_element(By.ID, "file").send_keys(str(face))
    card = _wait_for(browser, '.result[data-filename="face.jpg"][data-status="done"]')
    label = card.find_element(By.CSS_SELECTOR, ".label").text
    assert label in ("clean face", "occluded")
    assert label == ("clean face" if api["label"] == 1 else "occluded")
    assert float(card.get_attribute("data-score")) == pytest.approx(api["score"], abs=1e-6)
    assert f"score {api['score']:.4f}" in card.text
    # the thumbnail really rendered
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(
        "var i = document.querySelector('.result[data-filename=\"face.jpg\"] img.thumb');"
        " return i.complete && i.naturalWidth > 0;"))

    # a larger image is converted, and the card says from what
    big = tmp_path / "big.png"
    Image.open(io.BytesIO(blobs[0])).convert("RGB").resize((120, 100)).save(big)
    browser.find_element(By.ID, "file").send_keys(str(big))
    card = _wait_for(browser, '.result[data-filename="big.png"][data-status="done"]')
    assert card.find_element(By.CSS_SELECTOR, ".label").text in ("clean face", "occluded")
    assert "converted from 120x100 RGB" in card.text

    # a file that is not an image shows the server's error on its card
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image")
    browser.find_element(By.ID, "file").send_keys(str(junk))
    card = _wait_for(browser, '.result[data-filename="notes.txt"][data-status="error"]')
    assert "not an image" in card.find_element(By.CSS_SELECTOR, ".label").text
