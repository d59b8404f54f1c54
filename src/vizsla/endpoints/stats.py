"""What `vizsla endpoints list`, `describe` and the console show of a running endpoint, read from the
router's Prometheus /metrics: invocations, errors and p99 latency, overall and per production variant."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class VariantStats:
    """Invocations of one variant (or of the whole endpoint), errors among them, and latency buckets."""

    invocations: int = 0
    errors: int = 0
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound (s) -> cumulative count

    @property
    def p99_ms(self) -> float | None:
        return None if not self.invocations else _quantile(0.99, self.buckets) * 1000.0


@dataclass
class EndpointStats:
    """The endpoint's totals and each variant's; `reachable` False when /metrics did not answer."""

    reachable: bool
    total: VariantStats
    variants: dict[str, VariantStats]
    captured: int = 0
    capture_dropped: int = 0


def _quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus' histogram_quantile: linear within the bucket holding the Q-th observation."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound, as Prometheus does
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def parse_metrics(text: str) -> EndpointStats:
    """EndpointStats from the router's /metrics text."""
    from prometheus_client.parser import text_string_to_metric_families

    variants: dict[str, VariantStats] = {}
    total = VariantStats()
    stats = EndpointStats(True, total, variants)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            _add(stats, sample.name, sample.labels, sample.value)
    return stats


def _add(stats: EndpointStats, name: str, labels: dict[str, str], value: float) -> None:
    variant = stats.variants.setdefault(labels["variant"], VariantStats()) if "variant" in labels else None
    if name == "vizsla_endpoint_invocations_total" and variant is not None:
        failed = int(labels.get("status", "0")) >= 400
        for target in (variant, stats.total):
            target.invocations += int(value)
            target.errors += int(value) if failed else 0
    elif name == "vizsla_endpoint_latency_seconds_bucket" and variant is not None:
        bound = float(labels["le"])
        for target in (variant, stats.total):
            target.buckets[bound] = target.buckets.get(bound, 0.0) + value
    elif name == "vizsla_endpoint_captured_total":
        stats.captured = int(value)
    elif name == "vizsla_endpoint_capture_dropped_total":
        stats.capture_dropped = int(value)


def read_stats(record: dict[str, Any], timeout_s: float = 2.0) -> EndpointStats:
    """The stats of the endpoint RECORD describes; unreachable (zeros) when it does not answer."""
    import httpx

    try:
        response = httpx.get(f"{record['url']}/metrics", timeout=timeout_s)
        response.raise_for_status()
    except (httpx.HTTPError, KeyError):
        return EndpointStats(False, VariantStats(), {})
    return parse_metrics(response.text)
