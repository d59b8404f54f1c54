"""The profiler report in headless Debian Chromium, with no network: charts draw, no console errors, and a
screenshot that is not blank."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CHROMIUM = Path(os.environ.get("VIZSLA_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium via chromedriver; an unreachable proxy makes any network request fail."""
    if not CHROMIUM.is_file():
        pytest.skip(
            f"no Chromium at {CHROMIUM} (set VIZSLA_CHROMIUM; apt-get install chromium chromium-driver)"
        )
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
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-first-run",
        "--disable-background-networking",
        "--window-size=1280,2400",
        "--force-device-scale-factor=1",
        "--proxy-server=http://127.0.0.1:9",  # nothing listens there: no request can leave the machine
        "--proxy-bypass-list=<-loopback>",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vizsla.jobs import run_job
    from vizsla.profiler import ProfileSpec, create_profile_callbacks
    from vizsla.spec import build_spec
    from vizsla.testing.images import make_image_folder
    from vizsla.testing.jobs import tiny_spec_dict

    root = tmp_path_factory.mktemp("profiled-report")
    data = make_image_folder(root / "data", classes=("cat", "dog"), per_class=12, seed=0)
    spec = build_spec(tiny_spec_dict(data, root / "job", epochs=2, batch_size=4))
    profile = ProfileSpec(enabled=True, interval_ms=50, torch_trace={"wait": 1, "warmup": 1, "active": 2})
    run_job(spec, callbacks=create_profile_callbacks(profile, spec.output), progress=False)
    return root / "job" / "reports" / "profiler-report.html"


def test_report_renders_offline(browser: Any, report: Path) -> None:
    from PIL import Image, ImageStat
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(report.resolve().as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: (
            d.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length") >= 5
        )
    )
    drawn = browser.execute_script(
        "return Array.from(document.querySelectorAll('.figure')).filter("
        "  n => n.querySelector('.main-svg')).map(n => n.id)"
    )
    assert set(drawn) == {"fig-job_pie", "fig-system", "fig-steps", "fig-phase_pie", "fig-histogram"}
    bars = browser.execute_script("return document.querySelectorAll('#fig-steps .point').length")
    assert bars > 0  # the stacked step bars were drawn, not only axes
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors
    png = browser.get_screenshot_as_png()
    image = Image.open(io.BytesIO(png)).convert("L")
    stat = ImageStat.Stat(image)
    assert image.size[0] >= 1000
    assert stat.stddev[0] > 20, f"screenshot looks blank (pixel stddev {stat.stddev[0]:.1f})"
    (report.parent / "profiler-report.png").write_bytes(png)
