"""Metric definitions applied to a script's output lines, as SageMaker reads metrics from a job's logs.

Each line of stdout and stderr is searched with every definition's regex (`re.search`); the value is the
first capture group (the whole match for a regex without groups). SageMaker documents one group per regex and
says nothing of non-numeric captures: here they are skipped with one warning per metric.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field

from vizsla.scriptmode.spec import MetricDefinition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricMatch:
    """One value read from the output: the metric, its value, its 0-based index and the wall time."""

    name: str
    value: float
    index: int
    time: float

    def record(self) -> dict[str, object]:
        """The metrics.jsonl line of this match."""
        return {
            "kind": "script_metric",
            "name": self.name,
            "value": self.value,
            "index": self.index,
            "time": self.time,
        }


@dataclass
class MetricMatcher:
    """Matches lines against the definitions; keeps last values, counts and one-time warnings."""

    definitions: list[MetricDefinition]
    last: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    _compiled: list[tuple[str, re.Pattern[str]]] = field(default_factory=list, init=False)
    _warned: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self._compiled = [(d.name, re.compile(d.regex)) for d in self.definitions]
        self.counts = {d.name: 0 for d in self.definitions}

    def match(self, line: str, when: float | None = None) -> list[MetricMatch]:
        """All definitions' values in one line (not thread-safe: call from one thread at a time)."""
        found: list[MetricMatch] = []
        now = time.time() if when is None else when
        for name, pattern in self._compiled:
            hit = pattern.search(line)
            if hit is None:
                continue
            text = hit.group(1) if pattern.groups else hit.group(0)
            value = _number(text)
            if value is None:
                self._warn_once(name, text, pattern.pattern)
                continue
            index = self.counts[name]
            self.counts[name] = index + 1
            self.last[name] = value
            found.append(MetricMatch(name, value, index, now))
        return found

    def unmatched(self) -> list[str]:
        """Names of the definitions that never gave a value."""
        return [d.name for d in self.definitions if self.counts.get(d.name, 0) == 0]

    def _warn_once(self, name: str, text: str | None, regex: str) -> None:
        if name in self._warned:
            return
        self._warned.add(name)
        message = f"metric {name!r}: regex {regex!r} captured {text!r}, not a number; such values are skipped"
        self.warnings.append(message)
        log.warning(message)


def _number(text: str | None) -> float | None:
    """A finite float from the captured text, else None (a group that did not take part is None)."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None
