"""Prometheus metrics of one app (its own registry, so several apps in one process never collide).

With `vizsla serve --workers N` each worker process records into prometheus_client's multiprocess files
($PROMETHEUS_MULTIPROC_DIR, set by the server before the workers start) and /metrics reports the sum over all
workers, whichever worker answers the scrape.
"""

from __future__ import annotations

import os
import time
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServingMetrics:
    """Requests by route/status, latency, batch sizes, queue and compute time, errors by reason, cut-offs."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vizsla_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vizsla_request_duration_seconds",
            "Request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "vizsla_batch_size", "Images per inference batch", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.queue_time = Histogram(
            "vizsla_batch_queue_seconds",
            "Wait of a batch's oldest request before compute",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.compute_time = Histogram(
            "vizsla_batch_compute_seconds",
            "Forward pass time per batch",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.images = Counter("vizsla_images", "Images classified", registry=self.registry)
        self.errors = Counter(
            "vizsla_errors",
            "Refused or failed requests by reason",
            ["route", "reason"],
            registry=self.registry,
        )
        self.connections_cut = Counter(
            "vizsla_connections_cut",
            "Connections the server closed because a client was too slow, by reason",
            ["reason"],
            registry=self.registry,
        )

    def cut_connection(self, reason: str) -> None:
        self.connections_cut.labels(reason).inc()

    def observe_batch(self, rows: int, queued_s: float, compute_s: float) -> None:
        self.batch_size.observe(rows)
        self.images.inc(rows)
        self.queue_time.observe(max(queued_s, 0.0))
        self.compute_time.observe(compute_s)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry = self.registry
        if os.environ.get(MULTIPROC_ENV):  # every worker's files, summed
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP response by its route template and status, times it."""

    def __init__(self, app: Any, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)
