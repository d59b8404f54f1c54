"""A managed endpoint end to end, as a user runs it: create (InService), list, a client load while
`update` swaps to a model with other classes (no failed request), data capture, a killed server
restarted, a broken model Failed with its reason, and delete freeing the port."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from vizsla.endpoints import EndpointDir, read_record
from vizsla.endpoints.backends import free_port
from vizsla.endpoints.lifecycle import port_free, wait_for
from vizsla.endpoints.stats import read_stats
from vizsla.testing.cli import invoke_cli
from vizsla.testing.images import make_image_folder
from vizsla.testing.jobs import tiny_spec_dict

pytestmark = [pytest.mark.slow, pytest.mark.integration]

OLD, NEW = ("cat", "dog"), ("ant", "bee", "owl")


def _train(root: Path, name: str, classes: tuple[str, ...]) -> Path:
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec

    data = make_image_folder(root / f"data-{name}", classes=classes, per_class=4, seed=1)
    result = run_job(build_spec(tiny_spec_dict(data, root / name, epochs=1)), progress=False)
    assert result["status"] == "Completed", result
    return root / name


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("endpoint-jobs")
    return _train(root, "old", OLD), _train(root, "new", NEW)


class Load:
    """Client threads posting images until stopped: (start time, label or failure) of every request."""

    def __init__(self, url: str, image: bytes, threads: int = 3) -> None:
        self.url, self.image = url, image
        self.results: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    reply = client.post(
                        f"{self.url}/invocations", content=self.image, headers={"Content-Type": "image/png"}
                    )
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if reply.status_code != 200:
                    self.failures.append(f"{reply.status_code} {reply.text[:200]}")
                else:
                    self.results.append((started, reply.json()["predictions"][0]["label"]))

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def _captured_records(name: str, expected: int, wait_s: float = 10.0) -> list[str]:
    """The capture files' lines, once the writer thread wrote EXPECTED of them (or WAIT_S passed)."""
    deadline = time.monotonic() + wait_s
    while True:
        files = EndpointDir.of(name).capture.rglob("*.jsonl")
        lines = [line for f in files for line in f.read_text().splitlines()]
        if len(lines) >= expected or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_create_update_under_load_restart_and_delete(jobs: tuple[Path, Path], tmp_path: Path) -> None:
    old, new = jobs
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    code, out = invoke_cli(
        "endpoints",
        "create",
        "shop",
        "--model",
        str(old),
        "--port",
        str(port),
        "--runtime",
        "torch",
        "--capture-percent",
        "50",
    )
    assert code == 0, out
    assert f"shop InService at {url}" in out
    image = sorted((old.parent / "data-old").rglob("*.png"))[0].read_bytes()
    first = httpx.post(f"{url}/invocations", content=image, headers={"Content-Type": "image/png"})
    assert first.status_code == 200 and first.json()["predictions"][0]["label"] in OLD
    assert first.headers["x-amzn-invoked-production-variant"] == "AllTraffic"

    code, out = invoke_cli("endpoints", "list")
    assert code == 0 and "shop" in out and "InService" in out and url in out, out

    load = Load(url, image)
    while len(load.results) < 10 and not load.failures:
        time.sleep(0.05)
    code, out = invoke_cli("endpoints", "update", "shop", "--model", str(new))
    updated = time.monotonic()
    assert code == 0, out
    while len([r for r in load.results if r[0] > updated]) < 10 and not load.failures:
        time.sleep(0.05)
    load.finish()
    assert load.failures == [], load.failures[:5]
    assert {label for _, label in load.results[:5]} <= set(OLD)
    after = {label for started, label in load.results if started > updated}
    assert after and after <= set(NEW), after

    stats = read_stats(read_record("shop"))
    captured = _captured_records("shop", stats.captured)
    assert stats.total.invocations == len(load.results) + 1 and stats.total.errors == 0
    assert len(captured) == stats.captured and 0.3 < stats.captured / stats.total.invocations < 0.7

    backend_pid = read_record("shop")["backends"]["AllTraffic"]["pid"]
    os.kill(backend_pid, signal.SIGKILL)
    record = wait_for("shop", lambda r: r.get("restarts", 0) >= 1 and r["status"] == "InService", 180)
    assert record["status"] == "InService" and record["backends"]["AllTraffic"]["pid"] != backend_pid
    again = httpx.post(f"{url}/invocations", content=image, headers={"Content-Type": "image/png"})
    assert again.status_code == 200 and again.json()["predictions"][0]["label"] in NEW
    code, out = invoke_cli("endpoints", "describe", "shop")
    assert code == 0 and "Restarts: 1" in out and "AllTraffic" in out, out

    code, out = invoke_cli("endpoints", "delete", "shop")
    assert code == 0 and "deleted" in out
    assert port_free("127.0.0.1", port) and not EndpointDir.of("shop").exists()
    code, out = invoke_cli("endpoints", "describe", "shop")
    assert code == 2 and "no endpoint named 'shop'" in out


def test_a_model_that_cannot_load_fails_with_its_reason(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    port = free_port()
    code, out = invoke_cli("endpoints", "create", "broken", "--model", str(empty), "--port", str(port))
    assert code == 2 and "endpoint broken Failed" in out and "variant AllTraffic" in out, out
    assert read_record("broken")["status"] == "Failed"
    code, out = invoke_cli("endpoints", "list")
    assert "broken" in out and "Failed" in out
    invoke_cli("endpoints", "delete", "broken")
    assert port_free("127.0.0.1", port) and not EndpointDir.of("broken").exists()
