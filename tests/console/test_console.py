"""The console in headless Chromium over a real runs folder (a trained job, a tuning job) and a real
endpoint with two variants: each page, the report links, the image form, and path-traversal refusals.
With VIZSLA_UPDATE_DOCS=1 the screenshots replace docs/console-*.png."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from vizsla.testing.images import make_image_folder
from vizsla.testing.jobs import tiny_spec_dict
from vizsla.testing.servers import serving_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO_ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("ant", "bee", "cat")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/: one training job (profiled, so it has both reports) and a three-trial tuning job."""
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec
    from vizsla.tuning.job import run_tuning
    from vizsla.tuning.tune_spec import build_tune_spec

    root = tmp_path_factory.mktemp("console")
    data = make_image_folder(root / "data", classes=CLASSES, per_class=8, seed=2)
    runs = root / "runs"
    spec = tiny_spec_dict(data, runs / "flowers-job", epochs=1)
    spec["profile"] = {"enabled": True, "interval_ms": 100}
    assert run_job(build_spec(spec), progress=False)["status"] == "Completed"
    training = tiny_spec_dict(data, Path("unused"), epochs=2)
    training.pop("output")
    config = {
        "ranges": {"lr": {"type": "Continuous", "min": 1e-3, "max": 0.5, "scaling": "Logarithmic"}},
        "training": training,
    }
    tune = build_tune_spec(
        config,
        {"output": str(runs / "tune-lr"), "max_jobs": 3, "max_parallel": 1, "strategy": "Random"},
        source="test",
    )
    assert run_tuning(tune, progress=False)["status"] == "Completed"
    return runs


@pytest.fixture(scope="module")
def endpoint(runs: Path) -> Iterator[str]:
    """An endpoint with two variants (70/30) over the training job and the tuning job's best trial."""
    from vizsla.endpoints import create_endpoint, delete_endpoint, resolve_model
    from vizsla.endpoints.backends import free_port
    from vizsla.endpoints.spec import EndpointConfig

    config = EndpointConfig.model_validate(
        {
            "runtime": "torch",
            "capture": {"percent": 10},
            "variants": [
                {"name": "current", "model": resolve_model(runs / "flowers-job"), "weight": 0.7},
                {"name": "tuned", "model": resolve_model(runs / "tune-lr", best=True), "weight": 0.3},
            ],
        }
    )
    create_endpoint("flowers", config, port=free_port())
    try:
        yield "flowers"
    finally:
        delete_endpoint("flowers")


@pytest.fixture(scope="module")
def console(runs: Path) -> Iterator[str]:
    from vizsla.console import create_console_app

    with serving_in_thread(create_console_app(runs)) as url:
        yield url


def _wait_for(browser: Any, element_id: str) -> None:
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 60).until(expected_conditions.presence_of_element_located(("id", element_id)))


def _screenshot(browser: Any, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    browser.set_window_size(1200, max(800, browser.execute_script("return document.body.scrollHeight") + 40))
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("VIZSLA_UPDATE_DOCS") == "1":
        shutil.copyfile(shot, REPO_ROOT / "docs" / name)


def test_jobs_and_tuning_pages(browser: Any, console: str, runs: Path, tmp_path: Path) -> None:
    browser.get(f"{console}/")
    training = browser.find_element("id", "training-jobs").text
    assert "flowers-job" in training and "Completed" in training
    assert "tune-lr/trials/trial-0002" in browser.page_source  # the trials are training jobs too
    links = {
        a.text: a.get_attribute("href")
        for a in browser.find_elements("css selector", "tr[data-job='flowers-job'] .reports a")
    }
    assert set(links) == {"training", "profiler"}
    for href in links.values():
        reply = httpx.get(href)
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    assert "tune-lr" in browser.find_element("id", "tuning-jobs").text
    _screenshot(browser, tmp_path, "console-jobs.png")

    browser.find_element("link text", "tune-lr").click()
    best = browser.find_element("id", "best-trial").text
    assert "lr" in best and "training" in best  # its hyperparameter and the best trial's report link
    assert len(browser.find_elements("css selector", "#history circle")) == 3
    assert len(browser.find_elements("css selector", "#trials tr")) == 4  # header + 3 trials
    _screenshot(browser, tmp_path, "console-tuning.png")


def test_endpoints_page_and_image_form(
    browser: Any, console: str, endpoint: str, runs: Path, tmp_path: Path
) -> None:
    image = sorted((runs.parent / "data" / "test").rglob("*.png"))[0]
    browser.get(f"{console}/endpoints")
    row = browser.find_element("css selector", f"tr[data-endpoint='{endpoint}']").text
    assert "InService" in row and "current: flowers-job 70%" in row and "tuned:" in row and "30%" in row
    browser.find_element("id", "image").send_keys(str(image))
    browser.find_element("id", "send").click()
    _wait_for(browser, "answer")
    label = browser.find_element("id", "answer-label").text
    assert label in CLASSES
    assert browser.find_element("id", "answer-variant").text in ("current", "tuned")
    assert len(browser.find_elements("css selector", "#answer-topk tr")) == 1 + len(CLASSES)
    counts = browser.find_elements("css selector", f"tr[data-endpoint='{endpoint}'] td.num")
    assert [c.text for c in counts[:2]] == ["1", "0"]  # the form's invocation, no error
    _screenshot(browser, tmp_path, "console-endpoints.png")


def test_files_outside_the_runs_folder_are_refused(console: str, runs: Path, tmp_path: Path) -> None:
    secret = runs.parent / "secret.txt"
    secret.write_text("not for the console")
    (runs / "link-out").symlink_to(secret)
    host, port = console.removeprefix("http://").split(":")
    for path in (
        "/files/../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/link-out",
        "/files/flowers-job/../../secret.txt",
        "/tuning/../",
    ):
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        with contextlib.closing(connection):
            connection.request("GET", path)
            reply = connection.getresponse()
            body = reply.read()
        assert reply.status == 404 and b"not for the console" not in body, path
    assert httpx.get(f"{console}/files/flowers-job/spec.yaml").status_code == 200
