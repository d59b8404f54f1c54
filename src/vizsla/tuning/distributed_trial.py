"""A tuning trial that is itself a distributed training job (`vizsla tune --trial-nproc N`).

The trial process (tuning/trial.py) does not train: it runs the trial's job under torchrun's elastic agent
(training/launch.py) with this module as each process's entry point. Every process runs the same JobSpec;
rank 0 also holds the trial's reporter, so the objective is reported once per epoch and the pruner's
decision becomes a stop that all processes agree on at the end of that epoch (trainer.fit). A worker that
dies is restarted by torchrun up to the tuning job's max_retries, continuing from the last checkpoint.

The trial process then reads the outcome back: result.json (written by rank 0) and, for a pruned trial,
the `pruned_at` attribute rank 0 left on the trial in the study's storage.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from vizsla.spec import JobSpec
    from vizsla.tuning.trial import TrialRequest
    from vizsla.tuning.tune_spec import TuneSpec

log = logging.getLogger("vizsla.tuning")

MODULE = "vizsla.tuning.distributed_trial"


def run_distributed_trial(
    trial: optuna.Trial, spec: TuneSpec, request: TrialRequest, job_spec: JobSpec, *, resume: bool
) -> dict[str, Any]:
    """Run JOB_SPEC in spec.trial_nproc processes; returns its result.json (Failed when none was written)."""
    from vizsla.infra.hardware import CORES_VARIABLE
    from vizsla.training.launch import LaunchOptions, launch

    options = LaunchOptions(nproc_per_node=spec.trial_nproc, max_restarts=spec.max_retries)
    with tempfile.TemporaryDirectory(prefix="vizsla-trial-") as folder:
        plan = Path(folder) / "trial.json"
        plan.write_text(
            json.dumps(
                {
                    "storage_url": request.storage_url,
                    "study_name": request.study_name,
                    "trial_id": request.trial_id,
                    "tune_spec": request.tune_spec,
                    "job_spec": job_spec.model_dump(mode="json"),
                    "resume": resume,
                }
            ),
            encoding="utf-8",
        )
        # The trial's processes share this trial's cores, not the whole machine's.
        os.environ[CORES_VARIABLE] = str(max(1, request.threads))
        result = launch(job_spec, options, resume=resume, quiet=True, worker=(MODULE, [str(plan)]))
        if result.get("status") in (None, "InProgress") or (
            result.get("status") == "Failed" and not result.get("failure_reason")
        ):
            reason = first_error(plan) or result.get("failure_reason") or "the trial's processes ended early"
            result = {**result, "status": "Failed", "failure_reason": reason}
        return result


def was_pruned(trial: optuna.Trial) -> bool:
    """Whether rank 0's reporter stopped the job for the pruner (it marks the trial in the storage)."""
    return "pruned_at" in trial.study._storage.get_trial_user_attrs(trial._trial_id)


def run_rank(plan_path: str) -> int:
    """One process of the trial's job: the same job as every other rank; rank 0 reports to the study."""
    import optuna

    from vizsla.jobs import run_job
    from vizsla.spec import JobSpec
    from vizsla.tuning.study import create_pruner, create_storage, training_epochs
    from vizsla.tuning.trial import TrialReporter
    from vizsla.tuning.tune_spec import TuneSpec

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    job_spec = JobSpec.model_validate(plan["job_spec"])
    callbacks = []
    if os.environ.get("RANK", "0") == "0":
        spec = TuneSpec.model_validate(plan["tune_spec"])
        study = optuna.load_study(
            study_name=plan["study_name"],
            storage=create_storage(plan["storage_url"]),
            pruner=create_pruner(spec, training_epochs(spec)),
        )
        callbacks.append(TrialReporter(optuna.Trial(study, plan["trial_id"]), spec.objective.metric))
    try:
        run_job(job_spec, callbacks=callbacks, resume=bool(plan["resume"]), progress=False)
    except Exception as exc:  # noqa: BLE001 - the trial's result: recorded, then a normal exit
        # Exit 0: torchrun restarts the group only for processes that died (max_retries), as the tuning
        # worker reruns only a trial whose process died; an error is the trial's outcome, Failed.
        rank = os.environ.get("RANK", "0")
        log.error("rank %s: %s: %s", rank, type(exc).__name__, exc)
        error_file(plan_path, rank).write_text(f"{type(exc).__name__}: {exc}", encoding="utf-8")
    return 0


def error_file(plan_path: str | Path, rank: int | str) -> Path:
    """Where rank RANK leaves its error, beside the trial's plan."""
    return Path(plan_path).with_name(f"error-rank{rank}.txt")


def first_error(plan_path: str | Path) -> str | None:
    """The error of the lowest rank that left one (when the job could not write result.json itself)."""
    files = sorted(Path(plan_path).parent.glob("error-rank*.txt"), key=lambda p: int(p.stem[10:]))
    return f"rank {files[0].stem[10:]}: {files[0].read_text(encoding='utf-8')}" if files else None


if __name__ == "__main__":
    sys.exit(run_rank(sys.argv[1]))
