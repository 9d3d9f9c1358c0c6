"""Headless Chromium (Debian's `chromium` and `chromium-driver` packages) through Selenium, for the
dashboard's browser tests and `bench` (no browser download: it drives the system's browser).

    missing() -> str | None       why the browser cannot run here (None when it can)
    chromium(width, height)       a headless driver that keeps the page's console log
    open_page(driver, url)        load a dashboard URL and wait until its page says it is drawn
    wait_drawn(driver)            wait until the current page is drawn (body[data-ready="1"])
    console_errors(driver)        SEVERE console entries since the last call
"""
from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get install -y chromium chromium-driver; pip install selenium"


def missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found ({INSTALL})"
    if shutil.which("chromedriver") is None:
        return f"chromedriver not found ({INSTALL})"
    if importlib.util.find_spec("selenium") is None:
        return f"selenium is not installed ({INSTALL})"
    return None


def chromium(width: int = 1300, height: int = 1000) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--no-first-run", f"--window-size={width},{height}", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(20)
    return driver


def wait_drawn(driver: Any, timeout: float = 15.0) -> None:
    """Until the page's script has drawn it: app.js sets body[data-ready] to "1" after each page."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.execute_script("return document.body && document.body.dataset.ready") == "1":
            return
        time.sleep(0.05)
    raise TimeoutError(f"page {driver.current_url} not drawn in {timeout} s")


def open_page(driver: Any, url: str, timeout: float = 15.0) -> None:
    """Load `url`; a change of the hash alone is a same-document navigation, so the flag is cleared first."""
    if driver.current_url == url:
        driver.refresh()  # the same URL again: no navigation would happen
    else:
        if driver.current_url.startswith("http"):
            driver.execute_script("if (document.body) document.body.dataset.ready = '0'")
        driver.get(url)
    wait_drawn(driver, timeout)


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def screenshot(driver: Any, path: Path, width: int = 1300) -> None:
    """The whole page: the viewport is set to the page's content size for the shot (at most 4000 px)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    height = min(max(int(size["height"]), 600), 4000)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
