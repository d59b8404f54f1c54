"""Every batch size the batcher can form runs once before or right after serving starts."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from vizsla.serving.warmup import WarmUp, warm_up_now, warm_up_pending


def test_sizes_in_the_order_the_batcher_meets_them():
    assert WarmUp.for_batches(1).sizes == [1]
    assert WarmUp.for_batches(4).sizes == [1, 4, 2, 3]


def test_all_sizes_within_the_budget_the_rest_in_the_background():
    seen: list[tuple[int, ...]] = []

    def predict(images: np.ndarray) -> np.ndarray:
        seen.append(images.shape)
        return np.zeros((len(images), 2), np.float32)

    plan = warm_up_now(predict, (8, 6), max_batch=5, budget_s=60)
    assert [shape[0] for shape in seen] == [1, 5, 2, 3, 4] and not plan.pending
    assert seen[0] == (1, 3, 8, 6)

    seen.clear()
    plan = warm_up_now(predict, (8, 6), max_batch=5, budget_s=0)  # no time: batch size 1 only
    assert [shape[0] for shape in seen] == [1] and plan.pending == [5, 2, 3, 4]

    async def background() -> None:
        with ThreadPoolExecutor(1) as pool:
            await warm_up_pending(plan, predict, (8, 6), pool)

    asyncio.run(background())
    assert [shape[0] for shape in seen] == [1, 5, 2, 3, 4] and not plan.pending
