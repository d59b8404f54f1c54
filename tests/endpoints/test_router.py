"""The endpoint's router on real HTTP in front of two small backends: variant weights and targeting, the
invoked-variant header, per-variant metrics, a swap without a failed request, and data capture."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from vizsla.endpoints.capture import Capture, RotatingWriter
from vizsla.endpoints.proxy import Backend, EndpointMetrics, ProxyApp, Router, pick_variant
from vizsla.endpoints.spec import CaptureSpec, EndpointConfig, parse_variant
from vizsla.endpoints.stats import parse_metrics
from vizsla.errors import UserError
from vizsla.testing.servers import serving_in_thread as serving


def echo_backend(name: str, delay_s: float = 0.0) -> Any:
    """A model server stand-in: answers JSON naming itself and the body size (after DELAY_S)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await asyncio.sleep(delay_s)
        answer = json.dumps({"backend": name, "size": len(body)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"x-backend", name.encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    return app


@pytest.fixture
def backends() -> Iterator[dict[str, str]]:
    with (
        serving(echo_backend("a")) as a,
        serving(echo_backend("b", delay_s=0.02)) as b,
        serving(echo_backend("c")) as c,
    ):
        yield {"a": a, "b": b, "c": c}


def test_weights_hold_within_three_points_over_1000_picks() -> None:
    router = Router(seed=7)
    router.swap({"a": Backend("a", "x"), "b": Backend("b", "y")}, {"a": 0.9, "b": 0.1})
    counts = Counter(router.pick().variant for _ in range(1000))
    assert abs(counts["a"] / 1000 - 0.9) <= 0.03 and abs(counts["b"] / 1000 - 0.1) <= 0.03, counts
    assert router.pick("b").variant == "b"
    assert (
        pick_variant(["a", "b"], [0.9, 1.0], 0.0) == "a" and pick_variant(["a", "b"], [0.9, 1.0], 0.95) == "b"
    )


def test_variant_options_and_config_errors_name_the_problem() -> None:
    assert parse_variant("a=runs/job-1:0.9") == ("a", "runs/job-1", 0.9)
    assert parse_variant("b=runs/job-2") == ("b", "runs/job-2", 1.0)
    with pytest.raises(UserError, match="NAME=MODEL:WEIGHT"):
        parse_variant("runs/job-1")
    with pytest.raises(UserError, match="above 0"):
        parse_variant("a=job:0")
    config = EndpointConfig.model_validate(
        {"variants": [{"name": "a", "model": "/m", "weight": 3}, {"name": "b", "model": "/n", "weight": 1}]}
    )
    assert config.weights() == {"a": 0.75, "b": 0.25}
    with pytest.raises(ValueError, match="unique"):
        EndpointConfig.model_validate(
            {"variants": [{"name": "a", "model": "/m"}, {"name": "a", "model": "/n"}]}
        )


def _proxy(router: Router, capture: Capture) -> tuple[ProxyApp, EndpointMetrics]:
    metrics = EndpointMetrics()
    return ProxyApp(router, metrics, capture), metrics


def test_live_split_header_targeting_and_metrics(backends: dict[str, str], tmp_path: Path) -> None:
    router = Router(seed=1)
    router.swap({n: Backend(n, backends[n]) for n in ("a", "b")}, {"a": 0.8, "b": 0.2})
    app, _ = _proxy(router, Capture(CaptureSpec(), tmp_path / "capture"))
    with serving(app) as url, httpx.Client(base_url=url) as client:
        seen = Counter()
        for _ in range(1000):
            reply = client.post("/invocations", content=b"img", headers={"Content-Type": "image/jpeg"})
            assert reply.status_code == 200
            variant = reply.headers["x-amzn-invoked-production-variant"]
            assert reply.json()["backend"] == variant == reply.headers["x-backend"]
            seen[variant] += 1
        assert abs(seen["a"] / 1000 - 0.8) <= 0.03 and abs(seen["b"] / 1000 - 0.2) <= 0.03, seen
        targeted = client.post("/invocations", content=b"x", headers={"X-Amzn-SageMaker-Target-Variant": "b"})
        assert targeted.json()["backend"] == "b"
        unknown = client.post("/invocations", content=b"x", headers={"X-Amzn-SageMaker-Target-Variant": "z"})
        assert unknown.status_code == 400 and unknown.headers["x-amzn-errortype"] == "ValidationError"
        assert "no production variant z" in unknown.json()["message"]
        stats = parse_metrics(client.get("/metrics").text)
    assert stats.variants["a"].invocations == seen["a"] and stats.variants["b"].invocations == seen["b"] + 1
    assert stats.total.invocations == 1001 and stats.total.errors == 0
    assert stats.total.p99_ms is not None and stats.total.p99_ms > 0
    assert not (tmp_path / "capture").exists()  # capture off: nothing written


def test_swap_under_load_fails_no_request(backends: dict[str, str], tmp_path: Path) -> None:
    router = Router()
    router.swap({"AllTraffic": Backend("AllTraffic", backends["b"])}, {"AllTraffic": 1.0})
    app, _ = _proxy(router, Capture(CaptureSpec(), tmp_path))
    answers: list[str] = []
    failures: list[str] = []
    with serving(app) as url:

        def client_load() -> None:
            with httpx.Client(base_url=url) as client:
                for _ in range(40):
                    try:
                        reply = client.post("/invocations", content=b"x")
                        if reply.status_code == 200:
                            answers.append(reply.json()["backend"])
                        else:
                            failures.append(str(reply.status_code))
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))

        threads = [threading.Thread(target=client_load) for _ in range(4)]
        for thread in threads:
            thread.start()
        while len(answers) < 40:
            time.sleep(0.005)
        old_backend = router.backends["AllTraffic"]
        old = router.swap({"AllTraffic": Backend("AllTraffic", backends["c"])}, {"AllTraffic": 1.0})
        assert old == [old_backend]
        assert asyncio.run(_drained(old))
        for thread in threads:
            thread.join()
    assert failures == [] and len(answers) == 160
    switched = answers.index("c")
    assert set(answers[:switched]) == {"b"} and answers[-1] == "c"
    assert answers[switched:].count("b") <= 4  # only the requests in flight at the swap finish on b


async def _drained(backends: list[Backend]) -> bool:
    from vizsla.endpoints.proxy import drain

    return await drain(backends, 5.0)


def test_capture_writes_the_sampled_share_in_sagemakers_shape(
    backends: dict[str, str], tmp_path: Path
) -> None:
    router = Router()
    router.swap({"a": Backend("a", backends["a"])}, {"a": 1.0})
    capture = Capture(CaptureSpec(percent=30, max_mb=0.002), tmp_path / "capture", seed=3)
    app, _ = _proxy(router, capture)
    image = bytes(range(256)) * 2
    with serving(app) as url, httpx.Client(base_url=url) as client:
        for i in range(100):
            headers = {"Content-Type": "image/png", "X-Amzn-SageMaker-Inference-Id": f"req-{i}"}
            assert client.post("/invocations", content=image, headers=headers).status_code == 200
        stats = parse_metrics(client.get("/metrics").text)
    capture.close()
    files = sorted((tmp_path / "capture" / "a").rglob("*.jsonl"))
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(records) == stats.captured == capture.captured and stats.capture_dropped == 0
    assert 15 <= len(records) <= 45, len(records)  # 30% of 100
    assert len(files) > 1 and all(f.stat().st_size <= 2100 for f in files)  # rotated at ~2 kB
    first = records[0]
    request, answer = first["captureData"]["endpointInput"], first["captureData"]["endpointOutput"]
    assert request["mode"] == "INPUT" and request["encoding"] == "BASE64"
    assert request["observedContentType"] == "image/png" and base64.b64decode(request["data"]) == image
    assert answer["encoding"] == "JSON" and json.loads(answer["data"]) == {"backend": "a", "size": 512}
    assert first["eventMetadata"]["inferenceId"].startswith("req-") and first["eventMetadata"]["eventId"]
    assert first["eventMetadata"]["inferenceTime"].endswith("Z")


def test_a_full_capture_queue_drops_and_counts_instead_of_blocking(tmp_path: Path, monkeypatch) -> None:
    import vizsla.endpoints.capture as capture_module

    monkeypatch.setattr(capture_module, "QUEUE_SIZE", 2)
    blocked = threading.Event()
    monkeypatch.setattr(RotatingWriter, "write", lambda self, *a: blocked.wait(5))  # a stalled disk
    capture = Capture(CaptureSpec(percent=100), tmp_path)
    exchange = capture_module.Exchange(
        "a", b"x", "image/png", b"{}", "application/json", None, __import__("datetime").datetime.now()
    )
    started = time.perf_counter()
    for _ in range(10):
        capture.submit(exchange)
    assert time.perf_counter() - started < 0.5
    assert capture.dropped >= 7
    blocked.set()
    capture.close()
