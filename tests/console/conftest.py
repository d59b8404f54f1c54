"""Headless Debian Chromium for the console's pages, started as tests/integration/test_web_page.py
starts it (its fixture is module-local there, so the same options are repeated here)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("VIZSLA_CHROMIUM", "/usr/bin/chromium"))
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--no-first-run",
    "--disable-background-networking",
    "--window-size=1200,800",
    "--force-device-scale-factor=1",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium driven by its chromedriver; nothing downloaded (Selenium Manager offline)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (set VIZSLA_CHROMIUM; `.ci/run` installs Debian's chromium)")
    driver_path = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file() else None
    )
    if driver_path is None:
        pytest.skip("no chromedriver on PATH or at /usr/bin/chromedriver (Debian package chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is not installed (dev extra)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()
