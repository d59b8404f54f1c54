"""Checkpoints: everything needed to continue a job exactly, written atomically once per epoch (and where
a stopped job stopped, mid-epoch)."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vizsla.disk import writing
from vizsla.infra.io import atomic_write_bytes


def rng_state() -> dict[str, Any]:
    """RNG states of Python, NumPy and torch (CPU and CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialise to memory, then write atomically: a kill mid-write or a full disk (DiskFullError) leaves
    the previous checkpoint intact."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    with writing(path, needed=len(data), what="the checkpoint"):
        atomic_write_bytes(path, data)


def load_checkpoint(path: Path) -> dict[str, Any]:
    # weights_only=False: the payload holds RNG states (numpy arrays, tuples) written by this project.
    return torch.load(path, map_location="cpu", weights_only=False)
