"""`HyperparameterTuner` and its parameter ranges shaped like the SageMaker SDK's, over Vizsla tuning jobs.

`tuner.fit(inputs)` runs a script tuning job (every trial runs the estimator's entry point with sampled
hyperparameters merged over its static ones) in ESTIMATOR.output_path/<tuning job name>;
`best_estimator()` is a PyTorch estimator attached to the best trial, `analytics().dataframe()` the SDK's
HyperparameterTuningJobAnalytics frame.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vizsla.errors import UserError
from vizsla.sagemaker.pytorch import PyTorch, TrainingJob

DEFAULT_BASE_NAME = "pytorch-tuning"
# SageMaker's TrainingJobStatus for our trial statuses (an early-stopped job is Stopped there).
SAGEMAKER_STATUS = {"Pruned": "Stopped", "Pending": "InProgress"}


class ContinuousParameter:
    def __init__(self, min_value: float, max_value: float, scaling_type: str = "Auto") -> None:
        self.min_value, self.max_value, self.scaling_type = min_value, max_value, scaling_type

    def as_range(self) -> dict[str, Any]:
        return {
            "type": "Continuous",
            "min": self.min_value,
            "max": self.max_value,
            "scaling": self.scaling_type,
        }


class IntegerParameter:
    def __init__(self, min_value: int, max_value: int, scaling_type: str = "Auto") -> None:
        self.min_value, self.max_value, self.scaling_type = min_value, max_value, scaling_type

    def as_range(self) -> dict[str, Any]:
        return {"type": "Integer", "min": self.min_value, "max": self.max_value, "scaling": self.scaling_type}


class CategoricalParameter:
    def __init__(self, values: list[Any] | Any) -> None:
        self.values = list(values) if isinstance(values, list | tuple) else [values]

    def as_range(self) -> dict[str, Any]:
        return {"type": "Categorical", "values": list(self.values)}


def tuning_job_name(base: str) -> str:
    """<base>-YYMMDD-HHMMSS-mmm: short, like the SDK's tuning job names (they are capped at 32 chars)."""
    now = datetime.now(UTC)
    return f"{base[:14]}-{now.strftime('%y%m%d-%H%M%S')}-{now.microsecond // 1000:03d}"


class HyperparameterTuner:
    """The SDK's HyperparameterTuner, run locally (Optuna underneath, trials in their own processes)."""

    def __init__(
        self,
        estimator: PyTorch,
        objective_metric_name: str,
        hyperparameter_ranges: dict[str, Any],
        metric_definitions: list[dict[str, str]] | None = None,
        strategy: str = "Bayesian",
        objective_type: str = "Maximize",
        max_jobs: int | None = None,
        max_parallel_jobs: int = 1,
        early_stopping_type: str = "Off",
        base_tuning_job_name: str | None = None,
        random_seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.estimator = estimator
        self.objective_metric_name = objective_metric_name
        self._hyperparameter_ranges = dict(hyperparameter_ranges)
        self.metric_definitions = list(metric_definitions or estimator.metric_definitions)
        self.strategy = strategy
        self.objective_type = objective_type
        self.max_jobs = max_jobs
        self.max_parallel_jobs = max_parallel_jobs
        self.early_stopping_type = early_stopping_type
        self.base_tuning_job_name = base_tuning_job_name or DEFAULT_BASE_NAME
        self.random_seed = random_seed
        self.recorded = {k: v for k, v in kwargs.items() if isinstance(v, str | int | float | bool)}
        self.latest_tuning_job: Path | None = None

    def hyperparameter_ranges(self) -> dict[str, dict[str, Any]]:
        return {name: rng.as_range() for name, rng in self._hyperparameter_ranges.items()}

    def tune_config(self, inputs: Any, name: str) -> dict[str, Any]:
        """The TuneSpec mapping of a tuning job NAME over INPUTS."""
        script = self.estimator.script_section(inputs)
        script["metric_definitions"] = [dict(d) for d in self.metric_definitions]
        tuned = set(self._hyperparameter_ranges)
        script["hyperparameters"] = {k: v for k, v in script["hyperparameters"].items() if k not in tuned}
        script["sagemaker"] = {**script.get("sagemaker", {}), **self.recorded}
        config: dict[str, Any] = {
            "name": name,
            "output": str(Path(self.estimator.output_path).expanduser().resolve() / name),
            "objective": {"metric": self.objective_metric_name, "type": self.objective_type},
            "strategy": self.strategy,
            "max_parallel": self.max_parallel_jobs,
            "early_stopping": "Auto" if str(self.early_stopping_type).lower() == "auto" else "Off",
            "ranges": self.hyperparameter_ranges(),
            "script": script,
        }
        if self.max_jobs is not None:
            config["max_jobs"] = self.max_jobs
        if self.random_seed is not None:
            config["random_seed"] = self.random_seed
        return config

    def fit(self, inputs: Any = None, job_name: str | None = None, wait: bool = True, **_: Any) -> None:
        """Run the tuning job to its end (trials in parallel processes)."""
        from vizsla.tuning.job import run_tuning
        from vizsla.tuning.tune_spec import build_tune_spec

        name = job_name or tuning_job_name(self.base_tuning_job_name)
        spec = build_tune_spec(self.tune_config(inputs, name), source=f"HyperparameterTuner {name}")
        self.latest_tuning_job = Path(spec.output)
        run_tuning(spec, progress=False)

    def _dir(self) -> Path:
        if self.latest_tuning_job is None:
            raise UserError("no tuning job yet: call fit() first")
        return self.latest_tuning_job

    def _best(self) -> dict[str, Any]:
        result_file = self._dir() / "result.json"
        best = json.loads(result_file.read_text()).get("best") if result_file.is_file() else None
        if not best:
            raise UserError(f"no training job of tuning job {self._dir().name} completed with an objective")
        return best

    def best_training_job(self) -> str:
        """The name of the best trial's training job."""
        return _job_name(Path(self._best()["job_dir"]))

    def best_estimator(self) -> PyTorch:
        """A PyTorch estimator attached to the best trial (its hyperparameters set), deployable."""
        best = self._best()
        job_dir = Path(best["job_dir"])
        estimator = copy.copy(self.estimator)
        estimator._hyperparameters = {
            **self.estimator.hyperparameters(),
            **(best.get("hyperparameters") or {}),
        }
        estimator.latest_training_job = TrainingJob(_job_name(job_dir), job_dir)
        return estimator

    def analytics(self) -> HyperparameterTuningJobAnalytics:
        return HyperparameterTuningJobAnalytics(self._dir())

    def describe(self) -> dict[str, Any]:
        return json.loads((self._dir() / "result.json").read_text())


class HyperparameterTuningJobAnalytics:
    """The SDK's analytics of a tuning job: one row per training job in dataframe()."""

    def __init__(self, tune_dir: str | Path) -> None:
        self.tune_dir = Path(tune_dir)
        self._frame: Any = None

    @property
    def name(self) -> str:
        return self.tune_dir.name

    @property
    def tuning_ranges(self) -> dict[str, Any]:
        from vizsla.tuning.job import load_saved_spec

        return {k: v.model_dump() for k, v in load_saved_spec(self.tune_dir).ranges.items()}

    def dataframe(self, force_refresh: bool = False) -> Any:
        """Columns: the tuned hyperparameters, TrainingJobName, TrainingJobStatus, FinalObjectiveValue,
        TrainingStartTime, TrainingEndTime, TrainingElapsedTimeSeconds (SageMaker's, in its order)."""
        import pandas as pd

        if self._frame is not None and not force_refresh:
            return self._frame
        rows = []
        ranges = self.tuning_ranges
        for trial in _trial_rows(self.tune_dir):
            if trial.get("not_counted") in ("over_budget", "retried"):
                continue
            row: dict[str, Any] = {name: _as_float(trial.get(name)) for name in ranges}
            start, end = _time(trial.get("started")), _time(trial.get("finished"))
            job_dir = trial.get("job_dir")
            row.update(
                {
                    "TrainingJobName": _job_name(Path(job_dir)) if job_dir else None,
                    "TrainingJobStatus": SAGEMAKER_STATUS.get(trial["status"], trial["status"]),
                    "FinalObjectiveValue": trial.get("objective"),
                    "TrainingStartTime": start,
                    "TrainingEndTime": end,
                    "TrainingElapsedTimeSeconds": (end - start).total_seconds() if start and end else None,
                }
            )
            rows.append(row)
        self._frame = pd.DataFrame(rows)
        return self._frame

    def export_csv(self, filename: str) -> None:
        self.dataframe().to_csv(filename, index=False)


def _trial_rows(tune_dir: Path) -> list[dict[str, Any]]:
    import optuna

    from vizsla.tuning.analytics import trial_rows
    from vizsla.tuning.job import load_saved_spec
    from vizsla.tuning.study import create_storage, storage_url, study_name_of

    spec = load_saved_spec(tune_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name_of(spec), storage=create_storage(storage_url(spec, tune_dir))
    )
    return trial_rows(study)


def _job_name(job_dir: Path) -> str:
    try:
        return str(json.loads((job_dir / "result.json").read_text())["job_name"])
    except (OSError, ValueError, KeyError):
        return job_dir.name


def _as_float(value: Any) -> Any:
    """The SDK casts hyperparameter values to float where it can."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None
