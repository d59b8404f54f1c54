"""Tiny job specs for tests: a ~100k-parameter timm test model at 32 px trains a whole job in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vizsla.jobdir import JobDir


def tiny_spec_dict(data: Path, output: Path, **train: Any) -> dict[str, Any]:
    """A JobSpec mapping for `test_efficientnet` with random init, fp32, no loader workers, no tracking."""
    return {
        "output": str(output),
        "data": {"root": str(data), "num_workers": 0},
        "model": {"name": "test_efficientnet", "weights": "none", "image_size": 32},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.01, "finetune": "full", "precision": "fp32", **train},
        "tracking": {"enabled": False},
    }


def train_with_torchrun(spec: dict[str, Any], config: Path, *, nproc: int = 2,
                        timeout_s: float = 600.0) -> JobDir:
    """Write SPEC to CONFIG and run `vizsla train --config CONFIG --nproc-per-node NPROC --quiet` (a real
    torchrun job); assert it exits 0 (its stderr tail otherwise) and return its JobDir."""
    import subprocess
    import sys

    import yaml

    from vizsla.jobdir import JobDir

    config.write_text(yaml.safe_dump(spec))
    proc = subprocess.run(
        [sys.executable, "-m", "vizsla", "train", "--config", str(config), "--nproc-per-node", str(nproc),
         "--quiet"],
        capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return JobDir(spec["output"])


def wait_for_first_epoch(metrics: Path, timeout_s: float = 300.0, poll_s: float = 0.1) -> None:
    """Block until a job's metrics.jsonl holds its first epoch record (its first checkpoint is written):
    the moment tests kill a worker mid-training."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if metrics.is_file() and '"kind": "epoch"' in metrics.read_text():
            return
        time.sleep(poll_s)
    raise TimeoutError(f"no epoch record in {metrics} after {timeout_s:.0f} s")


def descendant_pids(launcher: int, *needles: str) -> list[int]:
    """PIDs of LAUNCHER's descendants whose command line holds every NEEDLE: the torchrun workers that
    tests kill (the agent itself and helper processes do not match)."""
    import psutil

    found = []
    for process in psutil.Process(launcher).children(recursive=True):
        command = " ".join(process.cmdline())
        if all(needle in command for needle in needles):
            found.append(process.pid)
    return found
