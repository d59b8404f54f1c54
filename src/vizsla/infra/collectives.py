"""Agreement between the processes of a distributed job: flags, objects, sums and errors over the group.

Each helper is a no-op (or returns its input) when no torch.distributed process group is initialised, so
single-process code calls them unconditionally. Joining the group (torchrun, rendezvous) is training's
business (vizsla.training.distributed); data preparation and training both agree through these. This
module imports torch: import it where torch is needed anyway.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist


class RankFailed(RuntimeError):
    """Another rank of the job failed; the message names it and its error."""

    def __init__(self, rank: int, message: str) -> None:
        super().__init__(f"rank {rank} failed: {message}")
        self.rank = rank
        self.message = message


def _flag_device() -> torch.device:
    """Collectives run on CUDA tensors under NCCL, on CPU tensors under gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank when FLAG is true on at least one (one tiny all-reduce)."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_flag_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    if dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """OBJ from rank SRC on every rank (pickled; for setup data, not per-step work)."""
    if not dist.is_initialized():
        return obj
    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src, device=_flag_device() if dist.get_backend() == "nccl" else None)
    return box[0]


def agree_on_error(error: BaseException | None) -> None:
    """Raise on every rank when any rank has an error (so no rank waits at a barrier for a failed one)."""
    if not dist.is_initialized():
        if error is not None:
            raise error
        return
    errors: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(errors, None if error is None else (type(error).__name__, str(error)))
    if error is not None:
        raise error
    for rank, item in enumerate(errors):
        if item is not None:
            raise RankFailed(rank, f"{item[0]}: {item[1]}")


def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """Element-wise sum of ARRAY over ranks (float64 keeps integer counts exact up to 2^53)."""
    if not dist.is_initialized():
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64)).to(_flag_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().numpy()
