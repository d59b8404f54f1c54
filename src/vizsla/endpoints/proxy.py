"""The endpoint's front router: an async reverse proxy on the public port in front of the model servers.

Each request goes to one production variant's backend (by weight, or the one SageMaker's
X-Amzn-SageMaker-Target-Variant names); the answer carries X-Amzn-Invoked-Production-Variant. Swapping
the backends (an update, a restarted server) is one assignment in the event loop, after which new requests
go to the new backends while those in flight finish on the old ones; `drain` waits for them.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vizsla.endpoints.capture import Capture, Exchange

TARGET_HEADER = b"x-amzn-sagemaker-target-variant"
INVOKED_HEADER = b"x-amzn-invoked-production-variant"
HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"host",
    b"content-length",
}
MAX_BODY = 64 * 1024 * 1024  # the proxy's own bound; each backend applies its --max-payload-mb below it
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(eq=False)
class Backend:
    """One variant's live model server, as the proxy sees it: where it answers and what it is serving."""

    variant: str
    url: str
    in_flight: int = 0


class UnknownVariant(Exception):
    """The request targets a variant this endpoint does not have."""


def pick_variant(names: list[str], cumulative: list[float], draw: float) -> str:
    """The variant whose cumulative weight interval holds DRAW (in [0, 1))."""
    return names[min(bisect.bisect_right(cumulative, draw), len(names) - 1)]


class Router:
    """The live backends by variant and their weights; picks with a seeded RNG (reproducible splits)."""

    def __init__(self, seed: int = 0) -> None:
        self.backends: dict[str, Backend] = {}
        self.weights: dict[str, float] = {}
        self._rng = random.Random(seed)
        self._names: list[str] = []
        self._cumulative: list[float] = []

    def swap(self, backends: dict[str, Backend], weights: dict[str, float]) -> list[Backend]:
        """Serve BACKENDS with WEIGHTS from now on; the backends no longer served (to drain and stop)."""
        old = [b for b in self.backends.values() if b not in backends.values()]
        total = sum(weights.values())
        self._names = list(weights)
        self._cumulative = list(itertools.accumulate(w / total for w in weights.values()))
        self.backends, self.weights = dict(backends), {k: w / total for k, w in weights.items()}
        return old

    def replace(self, backend: Backend) -> Backend | None:
        """Serve BACKEND for its variant (a restarted server); the one it replaces."""
        old = self.backends.get(backend.variant)
        self.backends = {**self.backends, backend.variant: backend}
        return old

    def pick(self, target: str | None = None) -> Backend:
        """The backend for the next request: TARGET's when given, else one drawn by weight."""
        if target:
            if target not in self.backends:
                raise UnknownVariant(target)
            return self.backends[target]
        return self.backends[pick_variant(self._names, self._cumulative, self._rng.random())]

    def ready(self) -> bool:
        return bool(self.backends) and set(self.backends) >= set(self._names)


async def drain(backends: list[Backend], timeout_s: float) -> bool:
    """Wait until no request is in flight on BACKENDS (or TIMEOUT_S); whether they drained."""
    deadline = time.monotonic() + timeout_s
    while any(b.in_flight for b in backends):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


class EndpointMetrics:
    """Invocations by variant and status, their latency, and capture counts, in Prometheus text."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.invocations = Counter(
            "vizsla_endpoint_invocations",
            "Invocations by production variant and status",
            ["variant", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vizsla_endpoint_latency_seconds",
            "Invocation latency through the router",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.captured = Counter(
            "vizsla_endpoint_captured", "Invocations sampled for data capture", registry=self.registry
        )
        self.capture_dropped = Counter(
            "vizsla_endpoint_capture_dropped",
            "Sampled invocations dropped because the capture queue was full",
            registry=self.registry,
        )

    def observe(self, variant: str, status: int, seconds: float) -> None:
        self.invocations.labels(variant, str(status)).inc()
        self.latency.labels(variant).observe(seconds)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def _is_invocation(scope: dict[str, Any]) -> bool:
    path = scope["path"]
    return scope["method"] == "POST" and (path.endswith("/invocations") or path.endswith("/infer"))


class ProxyApp:
    """The ASGI app on the endpoint's public port: /ping and /metrics of its own, the rest forwarded."""

    def __init__(self, router: Router, metrics: EndpointMetrics, capture: Capture) -> None:
        self.router = router
        self.metrics = metrics
        self.capture = capture
        self.client: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            if scope["path"] == "/ping" and scope["method"] == "GET":
                await _answer(send, 200 if self.router.ready() else 503, b"", b"text/plain")
            elif scope["path"] == "/metrics" and scope["method"] == "GET":
                await _answer(send, 200, self.metrics.render(), b"text/plain; version=0.0.4")
            else:
                await self._forward(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        import httpx

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                limits = httpx.Limits(max_connections=1024, max_keepalive_connections=128)
                self.client = httpx.AsyncClient(timeout=httpx.Timeout(70.0, connect=5.0), limits=limits)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        body = await _read_body(receive)
        if body is None:
            await _error(send, 413, "ValidationError", f"request body over {MAX_BODY} bytes")
            return
        headers = dict(scope["headers"])
        try:
            backend = self.router.pick(headers.get(TARGET_HEADER, b"").decode("latin-1").strip() or None)
        except UnknownVariant as exc:
            await _error(send, 400, "ValidationError", f"the endpoint has no production variant {exc}")
            return
        invocation = _is_invocation(scope)
        sampled = invocation and self.capture.sample()
        backend.in_flight += 1  # no await since pick(): a swap cannot slip in between
        try:
            status, response_body, response_type = await self._relay(scope, body, backend, send, sampled)
        finally:
            backend.in_flight -= 1
        if invocation:
            self.metrics.observe(backend.variant, status, time.perf_counter() - started)
        if sampled and status < 500:
            self._capture(backend.variant, body, headers, response_body, response_type)

    async def _relay(
        self, scope: dict[str, Any], body: bytes, backend: Backend, send: Any, keep: bool
    ) -> tuple[int, bytes, str]:
        """Send the request to BACKEND and stream its answer back; (status, body if KEEP, its type)."""
        import httpx

        url = backend.url + (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        sent = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        request = self.client.build_request(scope["method"], url, headers=sent, content=body)
        try:
            try:
                response = await self.client.send(request, stream=True)
            except httpx.RemoteProtocolError:  # a kept-alive connection the backend closed: once more
                response = await self.client.send(request, stream=True)
        except httpx.TransportError as exc:
            message = f"variant {backend.variant} is not answering ({type(exc).__name__}); retry"
            await _error(send, 503, "ServiceUnavailable", message)
            return 503, b"", ""
        kept: list[bytes] = []
        try:
            out = [
                (k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP - {b"content-length"}
            ]
            out.append((INVOKED_HEADER, backend.variant.encode()))
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if keep:
                    kept.append(chunk)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()
        return response.status_code, b"".join(kept), response.headers.get("content-type", "")

    def _capture(
        self, variant: str, body: bytes, headers: dict[bytes, bytes], answer: bytes, kind: str
    ) -> None:
        request_type = headers.get(b"content-type", b"application/octet-stream").decode("latin-1")
        inference_id = headers.get(b"x-amzn-sagemaker-inference-id", b"").decode("latin-1") or None
        dropped = self.capture.dropped
        self.capture.submit(
            Exchange(
                variant,
                body,
                request_type,
                answer,
                kind or "application/octet-stream",
                inference_id,
                datetime.now(UTC),
            )
        )
        (self.metrics.capture_dropped if self.capture.dropped > dropped else self.metrics.captured).inc()


async def _read_body(receive: Any) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _answer(send: Any, status: int, body: bytes, kind: bytes, extra: list[Any] | None = None) -> None:
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Any, status: int, code: str, message: str) -> None:
    """A refusal in the runtime API's shape, so boto3 raises the named error (see serving-contracts §1.2)."""
    body = json.dumps({"__type": code, "message": message, "error": message}).encode()
    await _answer(send, status, body, b"application/json", [(b"x-amzn-errortype", code.encode())])
