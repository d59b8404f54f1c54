"""The fork server that trial processes start from: preloaded once (tuning/preload.py), started early.

Each trial runs in a process of its own, forked from this server instead of started afresh, so it begins
with torch, timm, the trainer, MLflow and matplotlib imported (~8 s of imports otherwise) and, when every
trial builds the same backbone from the same seed, with that backbone built (see models/templates.py).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vizsla.tuning.tune_spec import TuneSpec

log = logging.getLogger("vizsla.tuning")

PRELOAD = ["vizsla.tuning.preload"]
# The backbone every trial builds, as JSON, for the server's preload to build once.
BACKBONE_VARIABLE = "VIZSLA_TRIAL_BACKBONE"
BACKBONE_FIELDS = ("model.name", "model.weights", "model.image_size", "train.seed")


def process_context() -> Any:
    """forkserver with our trial module preloaded: a fresh process per trial without re-importing torch."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def start_trial_server(spec: TuneSpec | None = None) -> None:
    """Start the fork server now, so its imports (seconds) overlap the tuning job's own setup instead of
    delaying the first trial; with SPEC it also builds the backbone all its trials build. Once per
    process; a server already running is kept."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    from multiprocessing import forkserver

    process_context()
    backbone = trial_backbone(spec) if spec is not None else None
    if backbone is not None:  # read by the server's preload, which inherits this environment
        os.environ[BACKBONE_VARIABLE] = json.dumps(backbone)
    try:
        forkserver.ensure_running()
    except OSError as exc:  # the first trial starts it (and reports a real failure) instead
        log.debug("could not start the trial fork server early: %s", exc)
    finally:
        os.environ.pop(BACKBONE_VARIABLE, None)


def trial_backbone(spec: TuneSpec) -> dict[str, Any] | None:
    """Name, weights, image size and seed of the backbone every trial of SPEC builds; None when a range
    changes it (or for trials that do not fork from this server: scripts, distributed trials)."""
    from vizsla.spec import build_spec
    from vizsla.tuning.space import resolve_path, trial_spec_dict

    if spec.is_script or spec.trial_nproc > 1:
        return None
    try:
        if any(resolve_path(name) in BACKBONE_FIELDS for name in spec.ranges):
            return None
        output = str(Path(spec.output or ".") / "trials" / "check")
        job = build_spec(trial_spec_dict(spec.training, {}, output=output), source="the trials' backbone")
    except Exception:  # noqa: BLE001 - checked (and reported) by the tuning job itself
        return None
    model = job.model
    return {
        "name": model.name,
        "weights": model.weights,
        "image_size": model.image_size,
        "seed": job.train.seed,
    }
