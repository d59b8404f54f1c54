"""BaseCollector: a trainer callback with one method that returns a sample; the writer of JSON lines."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import IO, Any

from vizsla.callbacks import Callback


class BaseCollector(Callback):
    """A profiler collector: a callback that can be asked for its latest sample at any time."""

    name: str = "base"

    def sample(self) -> dict[str, Any] | None:
        """The collector's current measurement (None when it has nothing yet)."""
        raise NotImplementedError


class JsonlWriter:
    """Appends records as JSON lines, buffered: written every `flush_every` records and on `flush()`."""

    def __init__(self, path: Path, flush_every: int = 64) -> None:
        self.path = Path(path)
        self.flush_every = flush_every
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._handle: IO[str] | None = None

    def append(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._pending.append(json.dumps(record, separators=(",", ":")))
            if len(self._pending) >= self.flush_every:
                self._write_locked()

    def flush(self) -> None:
        with self._lock:
            self._write_locked()

    def close(self) -> None:
        with self._lock:
            self._write_locked()
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def _write_locked(self) -> None:
        if not self._pending:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write("\n".join(self._pending) + "\n")
        self._handle.flush()
        self._pending.clear()
