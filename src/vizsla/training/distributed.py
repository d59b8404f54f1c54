"""One job across processes with torch.distributed: who this process is, the group, sharding and agreement.

A job is distributed when the standard variables say so (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT: set by torchrun, by `vizsla train --nproc-per-node`, or by a cluster scheduler). Then:

- every rank sees the same global order of samples and takes its own slice of each global batch, so N
  processes with a per-process batch of B/N step through exactly the batches one process with B would;
- evaluation is sharded without padding and its sums (loss, hits, confusion matrix) are all-reduced, so the
  metrics are those of a single-process evaluation of the same weights;
- decisions are agreed on: a stop requested on any rank (signal, debugger rule, tuning pruner) stops all
  of them at the same step, and an error on one rank is posted to the rendezvous store so that rank 0 can
  name it in result.json while the others fail fast on the broken group.
Rank 0 alone writes the job directory; the other ranks only compute. The collectives that agree (flags,
objects, sums, errors) live in vizsla.infra.collectives, which data preparation uses too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from vizsla.infra.logs import logger_levels

log = logging.getLogger("vizsla.train")

ERROR_KEY = "vizsla/error/{rank}"


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job; world_size 1 is a plain single-process job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    restart_count: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistContext()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip().lstrip("-").isdigit() else default


def context_from_env() -> DistContext:
    """The standard torch.distributed variables; a job without them is single-process."""
    world = _env_int("WORLD_SIZE", 1)
    return DistContext(
        rank=_env_int("RANK", 0),
        world_size=world,
        local_rank=_env_int("LOCAL_RANK", 0),
        local_world_size=_env_int("LOCAL_WORLD_SIZE", world),
        restart_count=_env_int("TORCHELASTIC_RESTART_COUNT", 0),
    )


def resolve_backend(requested: str, device: torch.device) -> str:
    """NCCL for CUDA tensors, gloo for CPU ones (NCCL cannot reduce CPU tensors)."""
    if requested != "auto":
        return requested
    return "nccl" if device.type == "cuda" else "gloo"


def init_process_group(ctx: DistContext, backend: str, timeout_s: float) -> None:
    """Join the group (env:// rendezvous: MASTER_ADDR/MASTER_PORT); a no-op for one process."""
    if not ctx.enabled or dist.is_initialized():
        return
    if not os.environ.get("MASTER_ADDR") or not os.environ.get("MASTER_PORT"):
        from vizsla.errors import UserError

        raise UserError(
            f"WORLD_SIZE={ctx.world_size} but MASTER_ADDR/MASTER_PORT are not set",
            hint="launch with `vizsla train --nproc-per-node N` or torchrun, or set the standard variables",
        )
    timeout = timedelta(seconds=timeout_s)
    store, _, _ = next(dist.rendezvous("env://", rank=ctx.rank, world_size=ctx.world_size, timeout=timeout))
    # torchrun's workers share the agent's store across restarts: without a per-attempt prefix, a restarted
    # group reads the dead group's addresses and waits until the timeout.
    store = dist.PrefixStore(f"vizsla/attempt_{ctx.restart_count}", store)
    dist.init_process_group(
        backend=backend, store=store, rank=ctx.rank, world_size=ctx.world_size, timeout=timeout
    )
    log.info("rank %d of %d joined the %s process group", ctx.rank, ctx.world_size, backend)


def destroy_process_group() -> None:
    if dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def post_error(ctx: DistContext, message: str) -> None:
    """Leave this rank's error in the rendezvous store, where rank 0 finds it (no collective needed)."""
    if not (ctx.enabled and dist.is_initialized()):
        return
    with contextlib.suppress(Exception):
        store = dist.distributed_c10d._get_default_store()
        store.set(ERROR_KEY.format(rank=ctx.rank), pickle.dumps((time.time(), message)))


def posted_errors(ctx: DistContext, wait_s: float = 3.0) -> list[tuple[float, int, str]]:
    """Errors other ranks posted, oldest first; waits up to WAIT_S for a failing rank to post its own."""
    if not (ctx.enabled and dist.is_initialized()):
        return []
    try:
        store = dist.distributed_c10d._get_default_store()
    except Exception:  # noqa: BLE001 - the group is gone: nothing to read
        return []
    deadline = time.monotonic() + wait_s
    found: list[tuple[float, int, str]] = []
    while True:
        found = []
        for rank in range(ctx.world_size):
            if rank == ctx.rank:
                continue
            key = ERROR_KEY.format(rank=rank)
            with contextlib.suppress(Exception):
                if store.check([key]):
                    when, message = pickle.loads(store.get(key))
                    found.append((when, rank, message))
        if found or time.monotonic() >= deadline:
            return sorted(found)
        time.sleep(0.2)


def shard_batches(order: list[Any], global_batch: int, ctx: DistContext) -> list[Any]:
    """This rank's items of ORDER: its contiguous slice of each global batch, so that the union over ranks
    of step k is exactly global batch k. The last batch is split as evenly as the remainder allows."""
    if not ctx.enabled:
        return order
    per_rank = global_batch // ctx.world_size
    mine: list[Any] = []
    for start in range(0, len(order), global_batch):
        batch = order[start : start + global_batch]
        if len(batch) == global_batch:
            mine.extend(batch[ctx.rank * per_rank : (ctx.rank + 1) * per_rank])
        else:  # remainder r: rank i gets floor/ceil of r / world, never empty (see usable_remainder)
            bounds = np.linspace(0, len(batch), ctx.world_size + 1).round().astype(int)
            mine.extend(batch[bounds[ctx.rank] : bounds[ctx.rank + 1]])
    return mine


def keeps_last_batch(num_samples: int, global_batch: int, world_size: int, min_per_rank: int) -> bool:
    """Whether the last partial global batch gives every rank at least MIN_PER_RANK samples (BatchNorm
    cannot train on one sample; a rank with none would leave the others waiting in the all-reduce)."""
    remainder = num_samples % global_batch
    return remainder == 0 or remainder >= world_size * min_per_rank


def eval_indices(length: int, ctx: DistContext) -> list[int]:
    """Rank r evaluates samples r, r+W, ...: every sample exactly once, no padding."""
    return list(range(ctx.rank, length, ctx.world_size)) if ctx.enabled else list(range(length))


def per_process_batch_size(global_batch: int, world_size: int) -> int:
    if global_batch % world_size:
        from vizsla.errors import SpecError

        raise SpecError(
            f"train.batch_size {global_batch} is the global batch and must be divisible by the "
            f"{world_size} processes (each takes batch_size / processes)"
        )
    return global_batch // world_size


@dataclass
class DataParallel:
    """DistributedDataParallel wrappers of the modules that train, rebuilt when the trainable set changes
    (staged fine-tuning unfreezes the backbone mid-job, and DDP registers parameters at construction)."""

    ctx: DistContext
    device: torch.device
    _wrapped: dict[int, tuple[tuple[int, ...], nn.Module]] = field(default_factory=dict)

    def __call__(self, module: nn.Module) -> nn.Module:
        if not self.ctx.enabled:
            return module
        trainable = tuple(id(p) for p in module.parameters() if p.requires_grad)
        cached = self._wrapped.get(id(module))
        if cached is not None and cached[0] == trainable:
            return cached[1]
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        wrapped = DistributedDataParallel(module, device_ids=device_ids)  # buffers follow rank 0's
        self._wrapped[id(module)] = (trainable, wrapped)
        return wrapped


@contextlib.contextmanager
def quiet_other_ranks(ctx: DistContext) -> Iterator[None]:
    """Only rank 0 logs at INFO; the others keep warnings and errors, prefixed by their rank."""
    if not ctx.enabled or ctx.is_main:
        yield
        return
    with logger_levels(logging.WARNING, "vizsla"):
        yield
