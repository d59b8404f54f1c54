"""Before serving: run every batch size the batcher can form once, so that no request pays a first run.

A runtime's first run at a new input shape plans and allocates for it (ONNX Runtime's memory patterns and
arena, oneDNN's primitives for torch); with dynamic batching the sizes 1..--max-batch-size all occur, so
without this the first requests that happen to form each size wait for it. The sizes run in the order the
batcher meets them (1 for a lone client, the largest under full load, then the rest) within
WARM_UP_BUDGET_S of start-up; what does not fit runs in the background on the inference thread, one size
per job, so a real batch waits for one warm-up batch at most.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("vizsla.serving")

WARM_UP_BUDGET_S = 1.5  # of start-up time; efficientnet_lite0 at 224 px runs sizes 1-16 in ~1 s on 2 cores


@dataclass
class WarmUp:
    """The batch sizes to run once, in order, and those run so far."""

    sizes: list[int]
    done: set[int] = field(default_factory=set)

    @classmethod
    def for_batches(cls, max_batch: int) -> WarmUp:
        return cls([1, *([max_batch] if max_batch > 1 else []), *range(2, max_batch)])

    @property
    def pending(self) -> list[int]:
        return [rows for rows in self.sizes if rows not in self.done]


def _zeros(rows: int, input_hw: tuple[int, int]) -> np.ndarray:
    return np.zeros((rows, 3, *input_hw), np.float32)


def warm_up_now(
    predict: Callable[[np.ndarray], object],
    input_hw: tuple[int, int],
    max_batch: int,
    budget_s: float = WARM_UP_BUDGET_S,
) -> WarmUp:
    """Run the batch sizes in order until BUDGET_S has passed (batch size 1 always)."""
    started = time.perf_counter()
    plan = WarmUp.for_batches(max_batch)
    for rows in plan.sizes:
        if plan.done and time.perf_counter() - started > budget_s:
            break
        predict(_zeros(rows, input_hw))
        plan.done.add(rows)
    log.info(
        "warmed up %d of %d batch sizes in %.2f s%s",
        len(plan.done),
        len(plan.sizes),
        time.perf_counter() - started,
        "; the others follow in the background" if plan.pending else "",
    )
    return plan


async def warm_up_pending(
    plan: WarmUp, predict: Callable[[np.ndarray], object], input_hw: tuple[int, int], executor: Executor
) -> None:
    """Run the sizes warm_up_now had no time for, one job each on EXECUTOR (the inference thread)."""
    loop = asyncio.get_running_loop()
    for rows in plan.pending:
        try:
            await loop.run_in_executor(executor, predict, _zeros(rows, input_hw))
        except Exception as exc:  # requests will report whatever this is; warming up is optional
            log.warning("warm-up at batch size %d failed: %s: %s", rows, type(exc).__name__, exc)
            return
        plan.done.add(rows)
