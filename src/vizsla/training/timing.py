"""Where a job's time went: named phases measured with `time.perf_counter` from the command's start.

`PhaseTimer` is anchored at a wall-clock start (the CLI process's start, or when `run_job` was called) and
times each phase in a `with timer.phase(name):` block; whatever no block covered (imports, model creation,
callbacks' setup) is `startup`, so the values of `phases()` add up to the duration, `elapsed()`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

# The order result.json, the console and `vizsla jobs describe` list them in.
PHASES = ("startup", "validate", "extract", "train", "evaluate", "finalize")


class PhaseTimer:
    """Seconds of each named phase of one attempt of a job, from `started` (epoch seconds) to `stop()`."""

    def __init__(self, started: float | None = None) -> None:
        wall, perf = time.time(), time.perf_counter()
        # A start in the future (another machine's clock) would make startup negative: clamp it to now.
        self.started = wall if started is None else min(float(started), wall)
        self._origin = perf - (wall - self.started)  # the start on the perf_counter clock
        self._end: float | None = None
        self.seconds: dict[str, float] = {}
        self.current: str | None = None  # the phase running now (None: startup, or between phases)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the time spent in the block to phase NAME (also when the block raises)."""
        begin, outer = time.perf_counter(), self.current
        self.current = name
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - begin
            self.current = outer

    def elapsed(self) -> float:
        """Seconds from the start to `stop()`, or to now while running."""
        end = self._end if self._end is not None else time.perf_counter()
        return end - self._origin

    def stop(self) -> float:
        """Fix the end (later calls keep the first end) and return the duration in seconds."""
        if self._end is None:
            self._end = time.perf_counter()
        return self.elapsed()

    @property
    def start_time(self) -> str:
        """The start as ISO-8601 UTC, to the second."""
        return _iso(self.started)

    @property
    def end_time(self) -> str:
        return _iso(self.started + self.elapsed())

    def phases(self) -> dict[str, float]:
        """Seconds per phase (3 decimals), every phase of PHASES present; `startup` is the remainder, so
        the values add up to `round(elapsed(), 3)` exactly."""
        total = round(self.elapsed(), 3)
        measured = {name: round(self.seconds.get(name, 0.0), 3) for name in PHASES if name != "startup"}
        measured |= {name: round(value, 3) for name, value in self.seconds.items() if name not in PHASES}
        return {"startup": round(max(0.0, total - sum(measured.values())), 3), **measured}


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")


def format_seconds(seconds: float) -> str:
    """Short durations for one-line summaries: 0.3 s, 9.5 s, 98 s, 9m 24s."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def ordered_phases(phases: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(name, seconds) of the phases that took any time, in PHASES order (unknown names last)."""
    names = [n for n in PHASES if n in phases] + sorted(n for n in phases if n not in PHASES)
    return [(n, float(phases[n])) for n in names if isinstance(phases[n], int | float) and phases[n] > 0]


def phases_text(phases: Mapping[str, Any], fmt: Callable[[float], str] = format_seconds) -> str:
    """'startup 1.2 s, validate 9.0 s, ...' of the phases that took any time."""
    return ", ".join(f"{name} {fmt(seconds)}" for name, seconds in ordered_phases(phases))
