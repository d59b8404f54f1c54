"""Concurrent requests share forward passes, each gets its own rows back, failures reach every caller."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from vizsla.serving.batching import DynamicBatcher
from vizsla.serving.errors import RequestError


def _run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_are_batched_and_split_back():
    sizes: list[int] = []
    threads: set[str] = set()

    def predict(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        threads.add(threading.current_thread().name)
        time.sleep(0.01)
        return batch[:, :1] * 2.0

    async def main():
        with ThreadPoolExecutor(1, thread_name_prefix="infer") as pool:
            batcher = DynamicBatcher(predict, max_batch=8, max_wait_ms=20, max_queue=100, executor=pool)
            batcher.start()
            requests = [np.full((1 + i % 2, 3), float(i), np.float32) for i in range(12)]
            results = await asyncio.gather(*(batcher.submit(r) for r in requests))
            await batcher.stop()
            return requests, results

    requests, results = _run(main())
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result, request[:, :1] * 2.0)
    assert sum(sizes) == sum(len(r) for r in requests)
    assert max(sizes) > 2 and max(sizes) <= 8, sizes
    assert len(sizes) < len(requests)
    assert len(threads) == 1


def test_a_failing_batch_fails_its_callers_and_the_batcher_goes_on():
    calls = {"n": 0}

    def predict(batch: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return batch

    async def main():
        with ThreadPoolExecutor(1) as pool:
            batcher = DynamicBatcher(predict, max_batch=4, max_wait_ms=0, max_queue=10, executor=pool)
            batcher.start()
            with pytest.raises(RuntimeError, match="boom"):
                await batcher.submit(np.ones((1, 2), np.float32))
            ok = await batcher.submit(np.ones((1, 2), np.float32))
            await batcher.stop()
            return ok

    assert _run(main()).shape == (1, 2)


def test_full_queue_is_a_503():
    async def main():
        with ThreadPoolExecutor(1) as pool:
            batcher = DynamicBatcher(
                lambda b: (time.sleep(0.2), b)[1], max_batch=1, max_wait_ms=0, max_queue=1, executor=pool
            )
            batcher.start()
            first = asyncio.ensure_future(batcher.submit(np.ones((1, 1))))
            await asyncio.sleep(0.05)  # the first is computing; the queue is empty again
            second = asyncio.ensure_future(batcher.submit(np.ones((1, 1))))
            await asyncio.sleep(0)
            with pytest.raises(RequestError) as info:
                await batcher.submit(np.ones((1, 1)))
            await asyncio.gather(first, second)
            await batcher.stop()
            return info.value.status

    assert _run(main()) == 503


def test_a_lone_request_goes_at_once_and_waits_only_for_requests_on_their_way():
    arriving = {"n": 0}

    def predict(batch: np.ndarray) -> np.ndarray:
        return batch

    async def one_request(on_the_way: int) -> float:
        arriving["n"] = on_the_way
        with ThreadPoolExecutor(1) as pool:
            batcher = DynamicBatcher(
                predict,
                max_batch=8,
                max_wait_ms=300,
                max_queue=10,
                executor=pool,
                arriving=lambda: arriving["n"],
            )
            batcher.start()
            started = time.perf_counter()
            await batcher.submit(np.zeros((1, 3), np.float32))
            elapsed = time.perf_counter() - started
            await batcher.stop()
            return elapsed

    assert _run(one_request(0)) < 0.15  # nobody decoding: no 300 ms wait for company
    assert _run(one_request(1)) >= 0.29  # one request still decoding: the batch waits for it (up to 300 ms)
