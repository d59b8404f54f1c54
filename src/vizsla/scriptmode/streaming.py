"""The script's stdout and stderr, line by line: train.log, console, metric regexes, error text, stderr tail.

One reader thread per pipe. Everything they touch is guarded by one lock; metric matches are also queued so
that `on_metric` runs in the supervising thread (tuning reports them to Optuna from there), not a reader's.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from vizsla.scriptmode.failure import ErrorLines, error_message
from vizsla.scriptmode.metrics import MetricMatch, MetricMatcher

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 40
READER_JOIN_S = 5.0  # after exit: grandchildren that still hold the pipes are killed after this
MAX_LINE_BYTES = 1 << 20  # longer lines (no newline) are split: bounded memory per line
VIZSLA_PREFIX = "[vizsla] "


class OutputStreams:
    """Owns train.log and metrics.jsonl while the script runs; `close()` when done."""

    def __init__(
        self, log_path: Path, metrics_path: Path, matcher: MetricMatcher, *, progress: bool, append_log: bool
    ) -> None:
        self.matcher = matcher
        self.progress = progress
        self.log_file = Path(log_path).open("a" if append_log else "w", encoding="utf-8", errors="replace")
        self.metrics_file = Path(metrics_path).open("w", encoding="utf-8")  # a re-run counts from index 0
        self.lock = threading.Lock()
        self.matches: list[MetricMatch] = []
        self.pending: queue.SimpleQueue[MetricMatch] = queue.SimpleQueue()
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self.errors = {"stdout": ErrorLines(), "stderr": ErrorLines()}
        self._threads: list[threading.Thread] = []

    def error_message(self) -> str:
        return error_message(self.errors["stdout"], self.errors["stderr"])

    def note(self, message: str) -> None:
        """A line of Vizsla's own in train.log, marked so that nobody takes it for the script's."""
        with self.lock:
            if not self.log_file.closed:
                self.log_file.write(f"{VIZSLA_PREFIX}{message}\n")
                self.log_file.flush()

    def write_line(self, line: str, console: IO[str]) -> None:
        """One output line to train.log and (unless quiet) the console; callers hold the lock or run alone."""
        self.log_file.write(line + "\n")
        self.log_file.flush()
        if self.progress:
            try:
                console.write(line + "\n")
                console.flush()
            except (OSError, ValueError):  # a closed console (pipe gone) must not stop the logging
                self.progress = False

    def start(self, stdout: IO[bytes], stderr: IO[bytes]) -> None:
        self._threads = [
            threading.Thread(target=self._read, args=(stdout, "stdout"), daemon=True),
            threading.Thread(target=self._read, args=(stderr, "stderr"), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def join(self, group: int) -> None:
        """Wait for both pipes to end; a grandchild still holding them open gets SIGKILL."""
        for thread in self._threads:
            thread.join(READER_JOIN_S)
        if any(thread.is_alive() for thread in self._threads):
            kill_group(group, signal.SIGKILL)
            for thread in self._threads:
                thread.join(READER_JOIN_S)

    def dispatch(self, on_metric: Callable[[str, float, int], None] | None, timeout: float = 0) -> None:
        """Call on_metric for the queued matches, waiting up to `timeout` seconds for the first."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                match = self.pending.get(timeout=remaining) if remaining > 0 else self.pending.get_nowait()
            except queue.Empty:
                return
            if on_metric is not None:
                try:
                    on_metric(match.name, match.value, match.index)
                except Exception as exc:  # noqa: BLE001 - a broken callback must not end the supervision
                    log.warning("on_metric raised %r; ignored", exc)

    def close(self) -> None:
        with self.lock:
            self.log_file.close()
            self.metrics_file.close()

    def _read(self, pipe: IO[bytes], stream: str) -> None:
        """Drain PIPE to its end whatever a line does to us: a reader that stopped would leave the script
        blocked on a full pipe forever (one failure per stream is logged, the lines keep flowing)."""
        console = sys.stdout if stream == "stdout" else sys.stderr
        failed = False
        for raw in iter(lambda: pipe.readline(MAX_LINE_BYTES), b""):
            try:
                self._take(raw.decode("utf-8", errors="replace").rstrip("\r\n"), stream, console)
            except Exception as exc:  # noqa: BLE001 - e.g. a full disk under train.log
                if not failed:
                    log.warning("cannot record the script's %s line (%r); still draining it", stream, exc)
                failed = True
        pipe.close()

    def _take(self, line: str, stream: str, console: IO[str]) -> None:
        """One line into train.log, the console, the error and stderr tails, and the metric matches."""
        with self.lock:
            self.write_line(line, console)
            self.errors[stream].feed(line)
            if stream == "stderr":
                self.stderr_tail.append(line)
            for match in self.matcher.match(line):
                self.matches.append(match)
                self.metrics_file.write(json.dumps(match.record()) + "\n")
                self.metrics_file.flush()
                self.pending.put(match)


def kill_group(pid: int, sig: signal.Signals) -> None:
    """Signal the script and everything it started (its own session: data loader workers too)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class StopSignals:
    """SIGTERM/SIGINT to this process become a stop request (only in the main thread, restored after)."""

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        self.on_signal = on_signal
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, lambda signum, _frame: self.on_signal(signum))
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
