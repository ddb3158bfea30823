"""End to end in a real headless Chromium (Debian chromium + chromium-driver, driven by Selenium).

The browser and driver are installed by apt-get when missing; if that is impossible the test fails
with the reason, since a skipped browser test would hide a broken page. Chromium runs with background
networking off and a fresh profile, and only ever talks to the app on loopback.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import png_bytes

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 60
pytestmark = pytest.mark.timeout(180)  # with pytest-timeout (the dev extra): never hang CI


def ensure_chromium() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if not shutil.which("apt-get"):
        pytest.fail("the browser test needs Debian's chromium and chromium-driver, and apt-get is not available")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as err:
            pytest.fail(f"cannot install chromium for the browser test: {' '.join(command)}: {err}")
        if done.returncode:
            pytest.fail(f"cannot install chromium for the browser test ({' '.join(command)} exited "
                        f"{done.returncode}; run as root: apt-get install chromium chromium-driver):\n"
                        f"{done.stderr[-2000:]}")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(f"apt-get finished but {CHROMIUM} or {CHROMEDRIVER} is still missing")


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    ensure_chromium()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the browser test needs Selenium: pip install selenium")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never try to download a browser
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic", "--disable-extensions", "--window-size=1200,1600",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    yield driver
    driver.quit()


def test_page_steers_an_uploaded_image(browser, live_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    image, corrupt = tmp_path / "square.png", tmp_path / "broken.png"
    image.write_bytes(png_bytes(7))
    corrupt.write_bytes(b"not an image at all")

    def submit(prompt: str, runs: int) -> dict[str, str]:
        box = browser.find_element(By.ID, "prompts")
        box.clear()
        box.send_keys(prompt)
        browser.find_element(By.ID, "run").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-runs") == str(runs))
        return {img.get_attribute("data-kind"): img.get_attribute("src")
                for img in browser.find_elements(By.CSS_SELECTOR, "#overlays img.overlay")}

    browser.get(live_server)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#examples button")) >= 4
    browser.find_element(By.ID, "file").send_keys(str(image))

    first = submit("the bright square", 1)
    status = browser.find_element(By.ID, "status")
    assert "error" not in status.get_attribute("class") and status.text.startswith("done"), status.text
    assert set(first) == {"head", "attention", "plain"} and first["head"].startswith("data:image/png;base64,")
    assert browser.find_elements(By.CSS_SELECTOR, "#search .search-row .hit img")  # gallery neighbours shown

    second = submit("the dark lower left corner", 2)
    assert second["attention"] != first["attention"] and second["head"] != first["head"]
    assert second["plain"] == first["plain"]  # the plain trunk does not read the prompt
    browser.save_screenshot(str(tmp_path / "page.png"))

    browser.find_element(By.ID, "file").send_keys(str(corrupt))
    submit("the bright square", 3)
    status = browser.find_element(By.ID, "status")
    assert "error" in status.get_attribute("class") and "cannot read the file as an image" in status.text

    browser.find_element(By.CSS_SELECTOR, '#examples button[data-key="cat"]').click()  # an example replaces the upload
    assert browser.find_element(By.ID, "file").get_attribute("value") == ""
    third = submit("the cat's face", 4)
    assert browser.find_element(By.ID, "status").text.startswith("done") and third["head"] != second["head"]


def test_page_draws_word_maps(browser, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_S)
    browser.get(live_server)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    browser.find_element(By.CSS_SELECTOR, '#examples button[data-key="cat"]').click()
    browser.find_element(By.ID, "prompts").send_keys("the cat's red-nosed face.\nzebra")
    browser.find_element(By.ID, "words-run").click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-word-runs") == "1")
    assert browser.find_element(By.ID, "status").text.startswith("word maps"), browser.find_element(By.ID, "status").text
    shown = [img.get_attribute("data-word") for img in browser.find_elements(By.CSS_SELECTOR, "#words-maps img.word-map")]
    assert shown == ["the", "cat's", "red-nosed", "face.", "zebra"]  # one overlay per word, subwords merged
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#words-maps figcaption")]
    assert captions[1].startswith("cat's ") and captions[1].endswith("%")


def test_a_real_photo_fills_in_its_suggested_prompts(browser, live_server):
    """Picking a multi-object photo fills the prompt box with its objects; typed prompts are kept."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from steervit.evaluation import pointing

    photos = {p.id: p for p in pointing.read_photos()}
    wait = WebDriverWait(browser, WAIT_S)
    browser.get(live_server)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    box = browser.find_element(By.ID, "prompts")
    box.clear()
    browser.find_element(By.CSS_SELECTOR, '#examples button[data-key="motorcycle"]').click()
    assert box.get_attribute("value").split("\n") == [o.prompts[0] for o in photos["motorcycle"].objects]
    browser.find_element(By.CSS_SELECTOR, '#examples button[data-key="coffee"]').click()  # still the suggestion: replaced
    assert box.get_attribute("value").split("\n") == [o.prompts[0] for o in photos["coffee"].objects]
    box.clear()
    box.send_keys("the saucer")
    browser.find_element(By.CSS_SELECTOR, '#examples button[data-key="motorcycle"]').click()
    assert box.get_attribute("value") == "the saucer"  # the user's own prompt is not overwritten
