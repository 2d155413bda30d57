"""A real browser for the tests: Debian's chromium through chromium-driver (Selenium), headless,
off the network. `make install` installs both where apt is available and we are root; without
them the browser tests skip and say why."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import wait_for

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"
# Screenshots of the pages go here when set (docs/ screenshots: STYLEHUB_SCREENSHOTS=docs).
SCREENSHOTS_ENV = "STYLEHUB_SCREENSHOTS"


def find_chromium() -> tuple[str, str] | None:
    browser = next((shutil.which(b) for b in CHROMIUM if shutil.which(b)), None)
    driver = shutil.which(DRIVER)
    return (browser, driver) if browser and driver else None


def chromium_driver(width: int = 1300, height: int = 1000):
    """A headless chromium WebDriver, or a skip naming what is missing."""
    found = find_chromium()
    if found is None:
        pytest.skip("no chromium / chromedriver on this machine: `apt-get install chromium "
                    "chromium-driver` (as root; `make install` does it where it can)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    browser, driver = found
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-background-networking",
                "--disable-gpu", "--disable-dev-shm-usage", "--disable-extensions",
                "--disable-component-update", "--no-first-run", "--disable-sync",
                f"--window-size={width},{height}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def failed_requests(driver) -> list[str]:
    """Every request of the page that failed or answered 4xx/5xx (the performance log), and
    every console error (a broken image, a script error)."""
    bad = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        params = msg.get("params", {})
        if msg.get("method") == "Network.responseReceived":
            resp = params.get("response", {})
            if resp.get("status", 200) >= 400:
                bad.append(f"{resp.get('status')} {resp.get('url', '')[:120]}")
        elif msg.get("method") == "Network.loadingFailed":
            bad.append(f"failed {params.get('errorText')} {params.get('requestId')}")
    bad += [f"console {e['level']}: {e['message'][:200]}" for e in driver.get_log("browser")
            if e["level"] == "SEVERE"]
    return bad


def images(driver, css: str = "img") -> list[tuple[bool, int, str]]:
    """(complete, naturalWidth, src head) of the page's images under ``css``."""
    return [tuple(x) for x in driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map("
        "i => [i.complete, i.naturalWidth, i.src.slice(0, 80)])", css)]


def wait_until(predicate, timeout: float = 60.0, every: float = 0.2):
    """conftest's bounded poll, at the browser's finer step."""
    return wait_for(predicate, timeout=timeout, every=every)


def screenshot(driver, name: str) -> None:
    """Save the whole page as NAME.png under $STYLEHUB_SCREENSHOTS when it is set."""
    folder = os.environ.get(SCREENSHOTS_ENV)
    if not folder:
        return
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1300, min(max(height + 40, 800), 4000))
    driver.execute_script("window.scrollTo(0, 0)")
    os.makedirs(folder, exist_ok=True)
    driver.save_screenshot(os.path.join(folder, f"{name}.png"))
