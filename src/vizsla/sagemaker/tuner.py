"""`HyperparameterTuner` and its parameter ranges shaped like the SageMaker SDK's, over Vizsla tuning jobs.

`tuner.fit(inputs)` runs a script tuning job (every trial runs the estimator's entry point with sampled
hyperparameters merged over its static ones) in ESTIMATOR.output_path/<tuning job name>;
`best_estimator()` is a PyTorch estimator attached to the best trial, `analytics().dataframe()` the SDK's
HyperparameterTuningJobAnalytics frame.
"""

from __future__ import annotations

import collections
import copy
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vizsla.errors import UserError
from vizsla.jobdir import JobDir
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
        self._process: TuningProcess | None = None

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
        """Start the tuning job (trials in parallel processes); with wait=False return at once (wait()).

        The job runs in its own Python process (`python -m vizsla.sagemaker._tuning_job`), never in this
        one: trial processes then start from that process, so a notebook run as a script without an
        `if __name__ == "__main__":` guard is not executed again in each trial."""
        from vizsla.sagemaker.session import remember_tuning_job
        from vizsla.tuning.tune_spec import build_tune_spec

        if self._process is not None and self._process.running:
            raise UserError(f"tuning job {self._dir().name} is still running: call wait() first")
        name = job_name or tuning_job_name(self.base_tuning_job_name)
        config = self.tune_config(inputs, name)
        spec = build_tune_spec(config, source=f"HyperparameterTuner {name}")  # bad settings fail here
        self.latest_tuning_job = Path(spec.output)
        remember_tuning_job(name, self.latest_tuning_job)
        self._process = TuningProcess(config, name)
        if wait:
            self.wait()

    def wait(self) -> None:
        """Block until the tuning job started by fit() ends; UserError when it could not run."""
        if self._process is None:
            self._dir()  # no job yet: says so
            return
        self._process.wait()

    @classmethod
    def attach(
        cls,
        tuning_job_name: str,
        sagemaker_session: Any = None,
        job_details: Any = None,
        estimator_cls: Any = None,
    ) -> HyperparameterTuner:
        """A tuner for the tuning job NAME (started in this process, its folder, or under ./runs), with
        its estimator, ranges and objective, as the SDK's HyperparameterTuner.attach rebuilds one."""
        from vizsla.sagemaker.session import Session, remember_tuning_job
        from vizsla.tuning.job import load_saved_spec

        session = sagemaker_session or Session()
        tune_dir = session.find_tuning_job(tuning_job_name)
        spec = load_saved_spec(tune_dir)
        script = dict(spec.script or {})
        if not script:
            raise UserError(f"{tune_dir} is not a script tuning job: attach() needs one started by a tuner")
        recorded = dict(script.get("sagemaker") or {})
        estimator = (estimator_cls or PyTorch)(
            entry_point=str(script["entry_point"]),
            source_dir=script.get("source_dir"),
            hyperparameters=dict(script.get("hyperparameters") or {}),
            role=recorded.get("role"),
            instance_count=recorded.get("instance_count") or 1,
            instance_type=recorded.get("instance_type"),
            metric_definitions=list(script.get("metric_definitions") or []),
            output_path=str(tune_dir.parent),
            sagemaker_session=session,
        )
        ranges: dict[str, Any] = {}
        for name, rng in spec.ranges.items():
            if rng.type == "Continuous":
                ranges[name] = ContinuousParameter(rng.min, rng.max, rng.scaling)
            elif rng.type == "Integer":
                ranges[name] = IntegerParameter(rng.min, rng.max, rng.scaling)
            else:
                ranges[name] = CategoricalParameter(list(rng.values))
        tuner = cls(
            estimator,
            spec.objective.metric,
            ranges,
            list(script.get("metric_definitions") or []),
            strategy=spec.strategy,
            objective_type=spec.objective.type,
            max_jobs=spec.max_jobs,
            max_parallel_jobs=spec.max_parallel,
            early_stopping_type=spec.early_stopping,
            base_tuning_job_name=tune_dir.name,
            random_seed=spec.random_seed,
        )
        tuner.latest_tuning_job = tune_dir
        remember_tuning_job(tune_dir.name, tune_dir)
        return tuner

    def _dir(self) -> Path:
        if self.latest_tuning_job is None:
            raise UserError("no tuning job yet: call fit() first")
        return self.latest_tuning_job

    def _best(self) -> dict[str, Any]:
        from vizsla.tuning.job import read_tune_result

        result_file = self._dir() / JobDir.RESULT_FILE
        best = read_tune_result(self._dir()).get("best") if result_file.is_file() else None
        if not best:
            raise UserError(f"no training job of tuning job {self._dir().name} completed with an objective")
        return best

    def best_training_job(self) -> str:
        """The name of the best trial's training job."""
        return _job_name(Path(self._best()["job_dir"]))

    def best_estimator(self) -> PyTorch:
        """A PyTorch estimator attached to the best trial (its hyperparameters set), deployable.

        Its hyperparameters() are JSON-encoded strings, as the SDK's attached Framework estimator returns
        them ('"64"' for a categorical "64", '0.01' for a float): notebooks strip the quotes themselves."""
        from vizsla.sagemaker.session import remember_job

        best = self._best()
        job_dir = Path(best["job_dir"])
        estimator = copy.copy(self.estimator)
        estimator._hyperparameters = {
            **self.estimator._hyperparameters,
            **(best.get("hyperparameters") or {}),
        }
        name = _job_name(job_dir)
        estimator.latest_training_job = TrainingJob(name, job_dir)
        remember_job(name, job_dir)
        return estimator

    def analytics(self) -> HyperparameterTuningJobAnalytics:
        return HyperparameterTuningJobAnalytics(self._dir())

    def describe(self) -> dict[str, Any]:
        from vizsla.tuning.job import read_tune_result

        return read_tune_result(self._dir())


class TuningProcess:
    """The tuning job's own process; its stderr is relayed to ours and its tail kept for errors."""

    def __init__(self, config: dict[str, Any], name: str) -> None:
        self.name = name
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vizsla.sagemaker._tuning_job"],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(config))
        self.process.stdin.close()
        self._relay = threading.Thread(target=self._relay_stderr, daemon=True, name=f"tuning-{name}")
        self._relay.start()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def _relay_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.tail.append(line.rstrip("\n"))
            sys.stderr.write(line)

    def wait(self) -> None:
        try:
            rc = self.process.wait()
        except KeyboardInterrupt:  # stop the trials as `vizsla tune` does on Ctrl-C, then re-raise
            self.process.terminate()
            self.process.wait()
            raise
        self._relay.join(5)
        if rc != 0:
            errors = [line for line in self.tail if line.startswith("error: ")]
            detail = errors[-1].removeprefix("error: ") if errors else "\n".join(list(self.tail)[-10:])
            raise UserError(f"tuning job {self.name} failed (exit code {rc}): {detail}")


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
    return trial_rows(study, tune_dir)


def _job_name(job_dir: Path) -> str:
    try:
        return str(json.loads(JobDir(job_dir).result.read_text())["job_name"])
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
