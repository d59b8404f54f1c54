"""Job health: what makes a job folder unusable although its status may say Completed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vizsla.jobdir import JobDir
from vizsla.relocation import StrPath

MODEL_FILES = ("config.json", "model.safetensors")  # vizsla.models.io's names (that module imports torch)


@dataclass(frozen=True)
class Problem:
    """Something wrong with a job folder: a short label for tables, a sentence naming the file and the fix."""

    label: str
    message: str


def read_spec_mapping(job: JobDir) -> tuple[dict[str, Any], str | None]:
    """The job's spec.yaml as a mapping ({} when missing or unreadable) and the error that made it so."""
    import yaml

    try:
        loaded = yaml.safe_load(job.spec.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return {}, _one_line(exc)
    if not isinstance(loaded, dict):
        return {}, "it holds no mapping"
    return loaded, None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def job_problems(job: JobDir) -> list[Problem]:
    """What makes the job folder JOB unusable although it may look finished: an unreadable spec.yaml or
    result.json, a model or checkpoint the result says exists but that is missing. [] for a sound job
    (a job still running, or killed before it wrote result.json, has no problem here: its status says)."""
    problems: list[Problem] = []
    spec, spec_error = read_spec_mapping(job)
    if spec_error is not None:
        problems.append(Problem("spec.yaml corrupt", f"{job.spec} cannot be read ({spec_error}): the job "
                                "cannot be resumed; re-run it with --overwrite"))
    try:
        result = job.read_result()
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        fix = (f"resume it with `vizsla train --resume {job.root}` to rewrite it"
               if job.last_checkpoint.is_file() else "re-run the job with --overwrite")
        problems.append(Problem("result.json corrupt",
                                f"{job.result} is truncated or corrupt ({_one_line(exc)}): {fix}"))
        return problems
    if result is None:
        return problems
    model = model_problem(job, spec, result)
    if model is not None:
        problems.append(model)
    epochs = result.get("epochs_completed")
    paused = result.get("status") == "Stopped"  # stopped to be resumed: its checkpoint is what it needs
    if paused and isinstance(epochs, int) and epochs > 0 and not job.last_checkpoint.is_file():
        problems.append(Problem("checkpoint missing", f"{job.last_checkpoint} is missing: `vizsla train "
                                "--resume` would start the job over; re-run it with --overwrite"))
    return problems


def model_problem(job: JobDir, spec: dict[str, Any], result: dict[str, Any]) -> Problem | None:
    """The job's model is missing or incomplete although its result says it was written."""
    script = spec.get("kind") == "script"
    recorded = result.get("best_model_path")
    if not recorded and (script or result.get("status") != "Completed"):
        return None  # no model was promised: a script that saved none, a job stopped before its best epoch
    model_dir = Path(recorded) if isinstance(recorded, str) and recorded else job.model_dir
    if not model_dir.is_dir():
        missing = f"{model_dir} is missing"
    elif script:
        missing = "" if any(model_dir.iterdir()) else f"{model_dir} is empty"
    else:
        absent = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
        missing = f"{model_dir} lacks {', '.join(absent)}" if absent else ""
    if not missing:
        return None
    status = result.get("status") or "Unknown"
    return Problem("model missing", f"{missing} (the job is {status}): restore the model folder from a copy "
                   "of the job, or re-run the job with --overwrite")


def check_job_model(path: StrPath) -> None:
    """For `vizsla serve JOB`: a job folder whose model is missing fails here with one line that names
    the missing file (a model folder, or any other path, is left to the model loader)."""
    from vizsla.errors import UserError

    job = JobDir(path)
    if not job.exists() or all((job.root / name).is_file() for name in MODEL_FILES):
        return
    spec, _ = read_spec_mapping(job)
    try:
        result = job.read_result() or {}
    except (OSError, ValueError):
        result = {}
    problem = model_problem(job, spec, result)
    if problem is not None:
        raise UserError(f"cannot serve the job: {problem.message}")
    if spec.get("kind") == "script":
        return  # a script's own model files: its inference script's model_fn knows them
    absent = [name for name in MODEL_FILES if not (job.model_dir / name).is_file()]
    if absent:
        missing = job.model_dir if not job.model_dir.is_dir() else job.model_dir / absent[0]
        status = result.get("status") or "Unknown: no result.json"
        raise UserError(f"cannot serve the job: {missing} is missing (the job is {status}, it saved no "
                        "model yet): serve a finished job, or resume this one with `vizsla train --resume`")


def resolve_target(path: StrPath, *, best: bool, tracking_uri: str | None = None) -> Path:
    """The job or model folder a command uses (`vizsla serve`, `vizsla transform`); with BEST, the best
    trial's job of a tuning job (DIR/result.json). A job whose model is missing fails here, in one line.
    A registry URI (models:/NAME@ALIAS, models:/NAME/3) is the version's model folder, downloaded once from
    the MLflow store TRACKING_URI (default $MLFLOW_TRACKING_URI, else ./runs/mlflow.db) into the cache."""
    import json

    from vizsla.errors import UserError
    from vizsla.relocation import recorded_origin, resolved_record

    if str(path).startswith("models:/"):
        from vizsla.tracking.registry import resolve_registry_uri

        return resolve_registry_uri(str(path), tracking_uri)
    path = Path(path).expanduser()
    if not best:
        check_job_model(path)  # a job whose model/ is gone: one line naming it, before anything starts
        return path
    result_file = path / JobDir.RESULT_FILE
    try:
        result = json.loads(result_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(
            f"--best needs a tuning job's result.json: cannot read {result_file}: {exc}"
        ) from None
    if isinstance(result, dict):  # trial paths relative to the tuning job, or under where it first was
        result = resolved_record(result, path, recorded_origin(result, "tune_dir"))
    best_trial = result.get("best") if isinstance(result, dict) else None
    job_dir = best_trial.get("job_dir") if isinstance(best_trial, dict) else None
    if not job_dir:
        raise UserError(f"{result_file} names no best trial (no finished trial yet?)")
    job_path = Path(job_dir)
    check_job_model(job_path)
    return job_path
