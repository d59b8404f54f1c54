"""One row per trial (SageMaker's tuning analytics dataframe), analytics.csv, the best trial and the summary.

Everything here reads the study alone -- its trials' states, values and the user attrs the worker sets
(job_dir, hyperparameters, status, not_counted, ...) -- so it works on a live study, a finished one, and one
resumed from another machine's storage.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vizsla.infra.io import atomic_write_text
from vizsla.jobdir import JobDir
from vizsla.relocation import recorded_origin, resolve_in_job

if TYPE_CHECKING:
    import optuna

# Optuna state -> SageMaker TrainingJobStatus, for trials without a "status" user attr (a worker died first).
STATE_STATUS = {
    "COMPLETE": "Completed",
    "PRUNED": "Pruned",
    "FAIL": "Failed",
    "RUNNING": "InProgress",
    "WAITING": "Pending",
}
LEADING_COLUMNS = ("trial",)
TRAILING_COLUMNS = (
    "objective",
    "status",
    "started",
    "finished",
    "duration_s",
    "job_dir",
    "error",
    "retry_of",
    "not_counted",
    "worker",
    "source",
)
FIXED_COLUMNS = frozenset(LEADING_COLUMNS + TRAILING_COLUMNS)
SOURCE_PARENT = "parent"
SOURCE_THIS_JOB = "this job"
# Buckets of summarize()'s counts, in display order; trials that do not count toward the budget get their own.
COUNT_KEYS = (
    "Completed",
    "Pruned",
    "Failed",
    "Stopped",
    "InProgress",
    "Pending",
    "Retried",
    "OverBudget",
    "WarmStart",
)
NOT_COUNTED_BUCKETS = {"retried": "Retried", "over_budget": "OverBudget", "warm_start": "WarmStart"}
# not_counted reasons whose trial may still be the best (the parent jobs of a warm start, as in AMT's
# OverallBestTrainingJob); retried and over-budget trials never are.
BEST_ELIGIBLE = (None, "warm_start")


class TrialPlaces:
    """Where the trials' job folders of a tuning job are now: the study records them relative to the
    tuning job folder (or, for a warm-start parent's trials, to the parent's), so the folder can move;
    studies from before recorded them absolute, under where the folder first was (its `origin`)."""

    def __init__(self, tune_dir: str | Path | None = None) -> None:
        self.home = Path(tune_dir).expanduser().resolve() if tune_dir is not None else None
        self.origin = tune_origin(self.home) if self.home is not None else None

    def job_dir(self, trial: Any) -> str | None:
        """The trial's job folder as an absolute path where it is now (relative when no folder is known)."""
        recorded = trial.user_attrs.get("job_dir")
        if not isinstance(recorded, str) or not recorded:
            return None
        attrs = trial.user_attrs
        parent = attrs.get("parent") if attrs.get("not_counted") == "warm_start" else None
        base = Path(parent) if isinstance(parent, str) and parent else self.home
        if base is None:
            return recorded
        if Path(recorded).is_absolute() and base == self.home:
            return self._moved(recorded)
        return resolve_in_job(recorded, base)

    def _moved(self, recorded: str) -> str:
        """An absolute folder recorded before trials were recorded relative: moved along with the job."""
        assert self.home is not None
        if self.origin is not None:
            return resolve_in_job(recorded, self.home, self.origin)
        path = Path(recorded)  # no record of the first location: a trials/<name> folder that is here now
        here = self.home / "trials" / path.name
        if not path.exists() and path.parent.name == "trials" and here.is_dir():
            return str(here)
        return recorded


def tune_origin(tune_dir: Path) -> Path | None:
    """Where a tuning job folder first was, when its files recorded absolute paths: result.json's
    tune_dir, else tune.yaml's output; None for folders that record relative paths."""
    try:
        result = json.loads((tune_dir / JobDir.RESULT_FILE).read_text(encoding="utf-8"))
        origin = recorded_origin(result, "tune_dir")
    except (OSError, ValueError, AttributeError):
        origin = None
    if origin is not None:
        return origin
    try:
        import yaml

        saved = (yaml.safe_load((tune_dir / "tune.yaml").read_text(encoding="utf-8")) or {}).get("output")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None
    return Path(saved) if isinstance(saved, str) and Path(saved).is_absolute() else None


def trial_status(trial: optuna.trial.FrozenTrial) -> str:
    """The SageMaker-style status: the worker's "status" attr, else derived from the Optuna state."""
    status = trial.user_attrs.get("status")
    if isinstance(status, str) and status:
        return status
    return STATE_STATUS.get(trial.state.name, trial.state.name.title())


def trial_hyperparameters(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The values the trial trained with (user attr, which includes fixed values), else Optuna's params."""
    hyperparameters = trial.user_attrs.get("hyperparameters")
    if isinstance(hyperparameters, Mapping) and hyperparameters:
        return dict(hyperparameters)
    return dict(trial.params)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else value.isoformat()


def _duration(trial: optuna.trial.FrozenTrial) -> float | None:
    duration = trial.user_attrs.get("duration_s")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        return float(duration)
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return None


def trial_row(trial: optuna.trial.FrozenTrial, places: TrialPlaces | None = None) -> dict[str, Any]:
    """One analytics row: trial number, the hyperparameters, then the fixed columns (job_dir absolute
    where the tuning job folder is now, see TrialPlaces)."""
    attrs = trial.user_attrs
    places = places if places is not None else TrialPlaces()
    not_counted = attrs.get("not_counted")
    row: dict[str, Any] = {"trial": trial.number}
    for name, value in trial_hyperparameters(trial).items():
        if name not in FIXED_COLUMNS:  # a hyperparameter named like a column would overwrite it
            row[name] = value
    row.update(
        {
            "objective": trial.value,
            "status": trial_status(trial),
            "started": attrs.get("started") or _iso(trial.datetime_start),
            "finished": attrs.get("finished") or _iso(trial.datetime_complete),
            "duration_s": _duration(trial),
            "job_dir": places.job_dir(trial),
            "error": attrs.get("error"),
            "retry_of": attrs.get("retry_of"),
            "not_counted": not_counted,
            "worker": attrs.get("worker"),
            "source": SOURCE_PARENT if not_counted == "warm_start" else SOURCE_THIS_JOB,
        }
    )
    return row


def trial_rows(study: optuna.Study, tune_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per trial, ordered by trial number, like HyperparameterTuningJobAnalytics.dataframe();
    TUNE_DIR (the tuning job folder) places the trials' job folders."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    places = TrialPlaces(tune_dir)
    return [trial_row(trial, places) for trial in trials]


def analytics_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Stable column order: trial, the hyperparameters sorted by name, then the fixed columns."""
    hyperparameters = sorted({key for row in rows for key in row if key not in FIXED_COLUMNS})
    return [*LEADING_COLUMNS, *hyperparameters, *TRAILING_COLUMNS]


def format_cell(value: Any) -> str:
    """CSV text of a value: empty for None, JSON for lists and dicts, repr-exact floats."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    return str(value)


def analytics_csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """The CSV document of `rows` (header included, even for no rows)."""
    columns = analytics_columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([format_cell(row.get(column)) for column in columns])
    return buffer.getvalue()


def write_analytics_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Write analytics.csv atomically, so a reader never sees a half-written table while trials finish."""
    atomic_write_text(Path(path), analytics_csv_text(rows))
    return Path(path)


def _is_maximize(direction: Any) -> bool:
    """Accept "Maximize"/"maximize", an optuna StudyDirection, or its name."""
    name = getattr(direction, "name", direction)
    return str(name).lower() == "maximize"


def best_trial(
    study: optuna.Study, direction: Any = None, *, include_parents: bool = True
) -> optuna.trial.FrozenTrial | None:
    """The best COMPLETE trial that counts (or is a warm-start parent, like AMT's OverallBestTrainingJob);
    None when none completed. `direction` defaults to the study's; ties go to the earlier trial."""
    import optuna

    maximize = _is_maximize(study.direction if direction is None else direction)
    allowed = BEST_ELIGIBLE if include_parents else (None,)
    candidates = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.user_attrs.get("not_counted") in allowed and t.value is not None and math.isfinite(t.value)
    ]
    if not candidates:
        return None
    sign = -1.0 if maximize else 1.0
    return min(candidates, key=lambda t: (sign * t.value, t.number))


def count_bucket(trial: optuna.trial.FrozenTrial) -> str:
    """Which count of the summary a trial adds to: its not-counted reason first, else its status."""
    reason = trial.user_attrs.get("not_counted")
    if reason in NOT_COUNTED_BUCKETS:
        return NOT_COUNTED_BUCKETS[reason]
    return trial_status(trial)


def status_counts(study: optuna.Study) -> dict[str, int]:
    """Trials per status (all COUNT_KEYS present, zero when none; an unknown status adds its own key)."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    for trial in study.get_trials(deepcopy=False):
        bucket = count_bucket(trial)
        counts[bucket] = counts.get(bucket, 0) + 1
    return counts


def read_test_accuracy(job_dir: str | Path | None) -> float | None:
    """The trial job's test accuracy from its result.json metrics, when it has one."""
    if not job_dir:
        return None
    try:
        result = JobDir(job_dir).read_result()
    except (OSError, ValueError):
        return None
    metrics = (result or {}).get("metrics") or {}
    value = metrics.get("test_accuracy") if isinstance(metrics, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_job_warnings(job_dir: str | Path | None) -> list[str]:
    """What the user should know before using the trial's model: its result.json warnings (a script that
    saved no model says so there) and a model folder that is missing or empty."""
    if not job_dir:
        return []
    try:
        result = JobDir(job_dir).read_result() or {}
    except (OSError, ValueError):
        result = {}
    warnings = [str(w) for w in (result.get("warnings") or []) if w]
    model_dir = JobDir(job_dir).model_dir
    if not model_dir.is_dir() or not any(model_dir.iterdir()):
        warnings.append(f"the trial saved no model: {model_dir} is missing or empty")
    return list(dict.fromkeys(warnings))


def describe_best(trial: optuna.trial.FrozenTrial, places: TrialPlaces | None = None) -> dict[str, Any]:
    """The best trial as `vizsla tune best` shows it: where its model is and how it scored."""
    job_dir = (places if places is not None else TrialPlaces()).job_dir(trial)
    return {
        "number": trial.number,
        "value": trial.value,
        "hyperparameters": trial_hyperparameters(trial),
        "job_dir": job_dir,
        "model_path": f"{job_dir}/model" if job_dir else None,
        "test_accuracy": read_test_accuracy(job_dir),
        "warnings": read_job_warnings(job_dir),
        "source": SOURCE_PARENT if trial.user_attrs.get("not_counted") == "warm_start" else SOURCE_THIS_JOB,
    }


def summarize(study: optuna.Study, tune_dir: str | Path | None = None) -> dict[str, Any]:
    """The tuning job's summary for DIR/result.json and `vizsla tune best`: counts and the best trial
    (its job folder placed where the tuning job folder TUNE_DIR is now)."""
    counts = status_counts(study)
    trials = study.get_trials(deepcopy=False)
    overall = best_trial(study)
    this_job = best_trial(study, include_parents=False)
    return {
        "direction": study.direction.name.lower(),
        "trials": len(trials),
        "counted_trials": sum(1 for t in trials if t.user_attrs.get("not_counted") is None),
        "counts": counts,
        "best": describe_best(overall, TrialPlaces(tune_dir)) if overall is not None else None,
        # AMT's BestTrainingJob (this job only) next to OverallBestTrainingJob (parents included)
        "best_this_job": this_job.number if this_job is not None else None,
    }
