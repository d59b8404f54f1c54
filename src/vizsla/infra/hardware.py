"""What this machine offers a job: usable CPU cores and the precisions its kernels run natively.

Probes only; the choices made from them (a job's precision, its loader workers) stay with their callers.
torch is imported inside the probes that need it, so asking for the core count imports nothing heavy.
"""

from __future__ import annotations

import os

CORES_VARIABLE = "VIZSLA_CORES"  # a job's share of the machine, set by whoever runs several jobs on it


def available_cores() -> int:
    """Cores this job may use: its share when a tuning worker runs several trials at once (VIZSLA_CORES),
    else the cores this process may run on (cgroup/affinity aware where the OS tells)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    share = os.environ.get(CORES_VARIABLE, "")
    return max(1, min(cores, int(share))) if share.isdigit() else cores


def cpu_supports_bf16() -> bool:
    """True when oneDNN has native bf16 kernels (AVX-512 BF16 / AMX); elsewhere bf16 is emulated and slow."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_autocast_precision() -> str:
    """The autocast precision of the current CUDA GPU: bf16 where it has bf16 units, else fp16."""
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
