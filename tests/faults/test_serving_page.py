"""The page at `/` of a server that requires an API key, in headless Debian Chromium: the key typed into
the page is sent as X-Api-Key, survives a reload of the tab (sessionStorage), and a missing key is
explained."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vizsla.serving.settings import ServeSettings
from vizsla.serving.testing import running_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CHROMIUM = Path(os.environ.get("VIZSLA_CHROMIUM", "/usr/bin/chromium"))
KEY = "page-k3y"
WAIT_S = 30.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through its Debian chromedriver (nothing downloaded), or skip."""
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not CHROMIUM.is_file() or not Path(driver_path).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} or no chromedriver (Debian: chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is not installed (dev extra)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Callable[[Any], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition(driver):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; status: {driver.find_element('id', 'status').text!r}")
        time.sleep(0.1)


def test_the_page_sends_the_api_key_it_was_given(browser, serving_job: Path):
    image = next((serving_job.parent / "data").rglob("*.jpg"))
    settings = ServeSettings(model_path=serving_job, api_keys=[KEY])
    with running_server(settings) as (url, _):
        browser.get(f"{url}/")
        browser.find_element("id", "file").send_keys(str(image))  # no key yet: refused, and said why
        _wait(browser, lambda d: d.find_element("id", "error").is_displayed(), "the 401 message")
        message = browser.find_element("id", "error").text
        assert "401" in message and "API key" in message, message

        browser.find_element("id", "apikey").send_keys(KEY)
        browser.refresh()  # the key survives a reload of the tab
        assert browser.find_element("id", "apikey").get_attribute("value") == KEY
        assert browser.execute_script("return sessionStorage.getItem('vizsla.apiKey')") == KEY
        browser.find_element("id", "file").send_keys(str(image))
        _wait(browser, lambda d: d.find_element("id", "result").is_displayed(), "the predictions")
        assert browser.find_elements("css selector", "#predictions li")
        assert not browser.find_element("id", "error").is_displayed()
