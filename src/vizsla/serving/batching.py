"""Dynamic batching: concurrent requests' images share one forward pass on one inference thread.

A request's rows join a queue; the collector takes the first waiting request, then adds requests until
MAX_BATCH rows or MAX_WAIT ms after it (whichever first), runs the batch on the inference thread and hands
each request back its own rows. While a batch runs, new requests queue up and form the next one. When the
queue is empty and no request is on its way (`arriving()`: requests still decoding), the batch goes at once:
a lone client never waits MAX_WAIT for company that cannot come.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from vizsla.serving.errors import RequestError


@dataclass
class _Item:
    rows: np.ndarray
    future: asyncio.Future[np.ndarray]
    queued_at: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    """Queue + one collector task + one inference thread running `predict(batch) -> scores`."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch: int,
        max_wait_ms: float,
        max_queue: int,
        executor: ThreadPoolExecutor,
        observe: Callable[[int, float, float], None] | None = None,
        arriving: Callable[[], int] | None = None,
    ) -> None:
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.executor = executor
        self.observe = observe  # (batch rows, queue seconds of the oldest, compute seconds)
        self.arriving = arriving  # requests that will join the queue soon; None: unknown, always wait
        self.queue: asyncio.Queue[_Item] | None = None
        self.task: asyncio.Task[None] | None = None
        self._pending: _Item | None = None

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued, then stop the collector."""
        if self.task is None or self.queue is None:
            return
        while not self.queue.empty() or self._pending is not None:
            await asyncio.sleep(0.01)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def submit(self, rows: np.ndarray) -> np.ndarray:
        """Scores for ROWS, computed in a batch with whatever else is queued; 503 when the queue is full."""
        if self.queue is None:
            raise RuntimeError("batcher not started")
        if self.queue.qsize() >= self.max_queue:
            raise RequestError(503, "server busy: inference queue full, retry later")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self.queue.put(_Item(rows, future))
        return await future

    async def _collect(self) -> list[_Item]:
        assert self.queue is not None
        first = self._pending or await self.queue.get()
        self._pending = None
        items, rows = [first], len(first.rows)
        deadline = time.perf_counter() + self.max_wait
        while rows < self.max_batch:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                if self.arriving is not None and self.arriving() <= 0:
                    break
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), remaining)
                except TimeoutError:
                    break
            if rows + len(item.rows) > self.max_batch:
                self._pending = item  # starts the next batch
                break
            items.append(item)
            rows += len(item.rows)
        return [item for item in items if not item.future.done()]  # cancelled (timed-out) requests drop out

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            if not items:
                continue
            batch = items[0].rows if len(items) == 1 else np.concatenate([item.rows for item in items])
            started = time.perf_counter()
            try:
                scores = await loop.run_in_executor(self.executor, self.predict, batch)
            except Exception as exc:  # one bad batch must not stop the collector
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            if self.observe is not None:
                self.observe(
                    len(batch), started - min(i.queued_at for i in items), time.perf_counter() - started
                )
            offset = 0
            for item in items:
                part = scores[offset : offset + len(item.rows)]
                offset += len(item.rows)
                if not item.future.done():
                    item.future.set_result(part)
