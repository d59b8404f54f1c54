"""Data capture (SageMaker's DataCaptureConfig): a sampled share of requests and responses as JSON lines.

Capture never touches the request path beyond a coin flip and a non-blocking queue put: a writer thread
encodes and writes the records, and when it falls behind the queue fills and further records are dropped
and counted rather than slowing a request. Files live under the endpoint's capture/ folder as SageMaker
lays them out in S3 (VARIANT/yyyy/mm/dd/hh/), each rotated once it reaches the configured size.
"""

from __future__ import annotations

import base64
import logging
import queue
import random
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from vizsla.endpoints.spec import CaptureSpec

log = logging.getLogger("vizsla.endpoints")

QUEUE_SIZE = 1024  # records waiting for the writer; beyond this they are dropped (counted)
TEXT_TYPES = ("application/json", "text/csv", "text/plain", "application/jsonlines")


@dataclass(frozen=True)
class Exchange:
    """One captured request and its response, as the proxy saw them."""

    variant: str
    request: bytes
    request_type: str
    response: bytes
    response_type: str
    inference_id: str | None
    time: datetime


def payload(data: bytes, content_type: str, mode: str) -> dict[str, Any]:
    """SageMaker's capture payload: JSON/CSV bodies as text, anything else (images) base64."""
    kind = content_type.split(";")[0].strip().lower()
    if kind in TEXT_TYPES:
        try:
            text = data.decode("utf-8")
            encoding = "CSV" if kind == "text/csv" else "JSON"
            return {"observedContentType": content_type, "mode": mode, "data": text, "encoding": encoding}
        except UnicodeDecodeError:
            pass
    encoded = base64.b64encode(data).decode("ascii")
    return {"observedContentType": content_type, "mode": mode, "data": encoded, "encoding": "BASE64"}


def capture_record(exchange: Exchange) -> dict[str, Any]:
    """The JSON line SageMaker writes for one invocation (captureData + eventMetadata + eventVersion)."""
    metadata: dict[str, Any] = {
        "eventId": str(uuid.uuid4()),
        "inferenceTime": exchange.time.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
    }
    if exchange.inference_id:
        metadata["inferenceId"] = exchange.inference_id
    return {
        "captureData": {
            "endpointInput": payload(exchange.request, exchange.request_type, "INPUT"),
            "endpointOutput": payload(exchange.response, exchange.response_type, "OUTPUT"),
        },
        "eventMetadata": metadata,
        "eventVersion": "0",
    }


class Capture:
    """Samples invocations and hands the sampled ones to a writer thread; `enabled` False: a no-op."""

    def __init__(self, spec: CaptureSpec, folder: Path, *, seed: int = 0) -> None:
        self.spec = spec
        self.folder = folder
        self.enabled = spec.enabled
        self.captured = 0
        self.dropped = 0
        self._rng = random.Random(seed)
        self._queue: queue.Queue[Exchange | None] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        if self.enabled:
            self._thread = threading.Thread(target=self._write_all, name="data-capture", daemon=True)
            self._thread.start()

    def sample(self) -> bool:
        """Whether to capture the next invocation (called before its body is forwarded)."""
        return self.enabled and self._rng.random() * 100.0 < self.spec.percent

    def submit(self, exchange: Exchange) -> None:
        """Queue EXCHANGE for writing; when the queue is full, drop it and count it."""
        try:
            self._queue.put_nowait(exchange)
        except queue.Full:
            self.dropped += 1

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._thread = None

    def _write_all(self) -> None:
        writer = RotatingWriter(self.folder, int(self.spec.max_mb * 1024 * 1024))
        try:
            while (exchange := self._queue.get()) is not None:
                try:
                    writer.write(exchange.variant, exchange.time, capture_record(exchange))
                    self.captured += 1
                except OSError as exc:  # a full disk: count it as dropped, keep serving
                    self.dropped += 1
                    log.warning("data capture could not write a record: %s", exc)
        finally:
            writer.close()


class RotatingWriter:
    """JSON lines into FOLDER/VARIANT/yyyy/mm/dd/hh/<time>-<n>.jsonl, a new file past MAX_BYTES or hour."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max(max_bytes, 1)
        self._files: dict[str, tuple[Path, IO[bytes]]] = {}
        self._serial = 0

    def write(self, variant: str, when: datetime, record: dict[str, Any]) -> None:
        import json

        line = (json.dumps(record) + "\n").encode("utf-8")
        path, handle = self._file(variant, when)
        if handle.tell() > 0 and handle.tell() + len(line) > self.max_bytes:
            handle.close()
            del self._files[variant]
            path, handle = self._file(variant, when)
        handle.write(line)
        handle.flush()  # whole lines on disk as they come: readers (monitoring jobs, tests) see them

    def _file(self, variant: str, when: datetime) -> tuple[Path, IO[bytes]]:
        hour = when.astimezone(UTC).strftime("%Y/%m/%d/%H")
        current = self._files.get(variant)
        if current is not None and current[0].parent == self.folder / variant / hour:
            return current
        if current is not None:
            current[1].close()
        self._serial += 1
        stamp = when.astimezone(UTC).strftime("%M-%S-%f")
        path = self.folder / variant / hour / f"{stamp}-{self._serial:04d}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._files[variant] = (path, open(path, "ab"))  # noqa: SIM115 - kept open across records
        return self._files[variant]

    def close(self) -> None:
        for _, handle in self._files.values():
            handle.close()
        self._files.clear()
