"""Imported once by a tuning worker's fork server: everything a trial process would otherwise import itself.

Each trial is a process forked from that server, so whatever is imported here costs a trial nothing: torch
and timm, the trainer, data preparation and the feature cache, MLflow with its SQL store (~3 s on its own),
matplotlib's Agg canvas, jinja2 for the report; and the backbone the trials build (from their seed, so each
trial copies it instead). Nothing here may leave a thread that a forked trial would wait for (a fork copies
only the forking thread): MLflow is preloaded only with its telemetry off, as the tracker runs it, and the
backbone is built on one intra-op thread. What fails to load is left to the trial, which then reports it.
"""

from __future__ import annotations

import importlib
import json
import os

# In the order a trial needs them; the lazily exported names of vizsla.data/models/training are real
# modules here, so the fork server imports what a trial runs, not only the package shells.
MODULES = (
    "torch",
    "timm",
    "vizsla.spec",
    "vizsla.training.trainer",
    "vizsla.data.prepare",
    "vizsla.data.features",
    "vizsla.models.classifier",
    "vizsla.models.io",
    "vizsla.jobs",
    "vizsla.tuning.trial",
    "vizsla.tuning.study",
    "vizsla.tuning.space",
    "vizsla.tracking.mlflow_tracker",
    "vizsla.training.plots",
    "vizsla.training.report",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "jinja2",
)


def preload() -> list[str]:
    """Import MODULES and MLflow's client, build the trials' backbone; returns what could not be loaded."""
    failed = []
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - optional dependency or broken install: the trial will tell
            failed.append(name)
    if not _preload_mlflow():
        failed.append("mlflow")
    if not _keep_trial_backbone():
        failed.append("backbone")
    return failed


def _keep_trial_backbone() -> bool:
    """Build the backbone the worker named (server.BACKBONE_VARIABLE) from its trials' seed and keep it,
    so each trial copies it (~20 ms) instead of building it (~0.2 s); see models/templates.py."""
    from vizsla.tuning.server import BACKBONE_VARIABLE

    text = os.environ.get(BACKBONE_VARIABLE)
    if not text:
        return True
    import torch

    threads = torch.get_num_threads()
    # One intra-op thread while building: more would start OpenMP's worker threads here, which a forked
    # trial does not get, and its first parallel op would wait for them forever.
    torch.set_num_threads(1)
    try:
        from vizsla.models.templates import keep_backbone
        from vizsla.training.runtime import seed_everything

        backbone = json.loads(text)
        seed_everything(int(backbone["seed"]), deterministic=False)  # as the job seeds before its build
        keep_backbone(backbone["name"], backbone["weights"], image_size=backbone["image_size"])
    except Exception:  # noqa: BLE001 - each trial then builds its backbone itself
        return False
    finally:
        torch.set_num_threads(threads)
    return True


def _preload_mlflow() -> bool:
    """Import mlflow and its SQL store as the tracker would (telemetry off unless the user turned it on)."""
    from vizsla.tracking.mlflow_tracker import preload_mlflow

    try:
        return preload_mlflow()
    except Exception:  # noqa: BLE001 - tracking is optional; the trial's tracker imports it itself
        return False


preload()
