"""The endpoint's web page in headless Debian Chromium: upload an image, see the model's top classes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vizsla.testing.images import make_image_folder
from vizsla.testing.jobs import tiny_spec_dict

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("VIZSLA_CHROMIUM", "/usr/bin/chromium"))
CLASSES = ("ant", "bee", "cat", "dog", "fox", "owl")  # more than five, so the page has a top-5 to cut
SERVER_START_S = 180.0  # the server may export the model to ONNX before it answers /ping
RESULT_WAIT_S = 60.0


def _chromedriver() -> str | None:
    found = shutil.which("chromedriver")
    return found or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file() else None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by its chromedriver; nothing downloaded (Selenium Manager offline)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (set VIZSLA_CHROMIUM; `.ci/run` installs Debian's chromium)")
    driver_path = _chromedriver()
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
        "--window-size=1000,760",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def served_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained job over six generated classes (big enough images that the preview is legible)."""
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec

    root = tmp_path_factory.mktemp("web-page")
    data = make_image_folder(root / "data", classes=CLASSES, per_class=8, size=(120, 90), seed=3)
    spec = build_spec(tiny_spec_dict(data, root / "job", epochs=4))
    result = run_job(spec, progress=False)
    assert result["status"] == "Completed", result
    return root / "job"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.fixture(scope="module")
def server(served_job: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`vizsla serve JOB` on a free loopback port as a user starts it; its base URL once /ping answers 200."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "serve.log"
    command = [
        sys.executable,
        "-m",
        "vizsla",
        "serve",
        str(served_job),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"`{' '.join(command)}` exited with {proc.returncode}:\n{_log_tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not answer /ping within {SERVER_START_S:.0f} s:\n{_log_tail(log)}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _predict_in_process(job: Path, images: list[Path]) -> tuple[Path, list[str], list[float]]:
    """The image the in-process model is surest of (widest top-1 margin) and its classes, best first."""
    import torch

    import vizsla
    from vizsla.data.decode import decode_image
    from vizsla.data.transforms import create_transform
    from vizsla.spec import DataSpec

    model = vizsla.load_model(job)
    transform = create_transform(model.preprocessing, train=False, augment=False, hflip=False)
    max_pixels = DataSpec.model_fields["max_image_pixels"].default
    best: tuple[float, Path, list[str], list[float]] | None = None
    with torch.no_grad():
        for path in images:
            image = decode_image(path.read_bytes(), max_pixels=max_pixels)
            probs = torch.softmax(model(transform(image).unsqueeze(0)).float(), dim=1)[0]
            values, indices = probs.sort(descending=True)
            margin = float(values[0] - values[1])
            if best is None or margin > best[0]:
                best = (margin, path, [model.labels[i] for i in indices.tolist()], values.tolist())
    assert best is not None
    return best[1], best[2], best[3]


def _wait_for(driver: Any, condition: Any, what: str) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, RESULT_WAIT_S, poll_frequency=0.1).until(condition)
    except TimeoutException:
        status = driver.find_element("id", "status").text
        error = driver.find_element("id", "error").text
        pytest.fail(
            f"page never showed {what} within {RESULT_WAIT_S:.0f} s (status {status!r}, error {error!r})"
        )


def _upload(driver: Any, path: Path) -> None:
    driver.find_element("id", "file").send_keys(str(path))


def _shown_predictions(driver: Any) -> list[tuple[str, float, str]]:
    return [
        (item.get_attribute("data-label"), float(item.get_attribute("data-probability")), item.text)
        for item in driver.find_elements("css selector", "#predictions li")
    ]


def _results_for(name: str) -> Any:
    """A wait condition: the result section is visible and its caption names the file just uploaded."""

    def shown(driver: Any) -> bool:
        section = driver.find_element("id", "result")
        return section.is_displayed() and driver.find_element("id", "caption").text.startswith(name)

    return shown


def _error_shown(driver: Any) -> bool:
    return driver.find_element("id", "error").is_displayed()


def test_upload_shows_the_models_top_classes(browser, server, served_job, tmp_path):
    image, labels, probs = _predict_in_process(
        served_job, sorted((served_job.parent / "data" / "test").rglob("*.*"))
    )
    browser.get_log("browser")  # drop whatever an earlier test left
    browser.get(f"{server}/")
    assert "classify an image" in browser.title.lower()
    _upload(browser, image)
    _wait_for(browser, _results_for(image.name), f"predictions for {image.name}")

    shown = _shown_predictions(browser)
    assert len(shown) == 5, shown
    assert shown[0][0] == labels[0], f"page shows {shown[0][0]!r}, load_model predicts {labels[0]!r}"
    expected = dict(zip(labels, probs, strict=True))
    for label, probability, _ in shown:  # ranks 2-5 may swap on near ties (ONNX vs eager), values may not
        assert probability == pytest.approx(expected[label], abs=1e-3), (label, probability, expected)
    assert [p for _, p, _ in shown] == sorted((p for _, p, _ in shown), reverse=True)
    assert shown[0][2].startswith(labels[0]) and f"{100 * shown[0][1]:.1f}%" in shown[0][2]
    assert labels[0] in browser.find_element("id", "status").text
    assert not browser.find_element("id", "error").is_displayed()
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, f"console errors: {errors}"

    screenshot = tmp_path / "serving-page.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 0
    if os.environ.get("VIZSLA_UPDATE_DOCS") == "1":
        shutil.copyfile(screenshot, REPO_ROOT / "docs" / "serving-page.png")


def test_refused_uploads_are_explained_and_the_page_recovers(browser, server, served_job, tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image\n")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    browser.get(f"{server}/")
    browser.get_log("browser")

    _upload(browser, text_file)
    _wait_for(browser, _error_shown, "an error for a text file")
    message = browser.find_element("id", "error").text
    assert "415" in message and "notes.txt" in message, message
    assert not browser.find_element("id", "result").is_displayed()

    _upload(browser, broken)
    _wait_for(
        browser, lambda d: "broken.jpg" in d.find_element("id", "error").text, "an error for a broken JPEG"
    )
    message = browser.find_element("id", "error").text
    assert "400" in message, message
    assert "no details in the reply" not in message, f"the page shows no reason: {message}"

    good = sorted((served_job.parent / "data" / "valid").rglob("*.jpg"))[0]
    _upload(browser, good)
    _wait_for(browser, _results_for(good.name), "predictions after the errors")
    assert not browser.find_element("id", "error").is_displayed()
    assert len(_shown_predictions(browser)) == 5
    # Chromium logs each refused request as a failed resource load; nothing else may be an error.
    errors = [
        entry
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]
    assert not errors, f"console errors: {errors}"
