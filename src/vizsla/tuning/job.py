"""A tuning job end to end: directory, study, MLflow parent run, warm start, workers, analytics, report.

Re-running the same command on the same --output continues the job: finished trials stay, the trial that
was running when the job was killed is run again from its checkpoint, and the budget is completed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vizsla.errors import SpecError, UserError
from vizsla.infra.io import atomic_write_json, atomic_write_text
from vizsla.jobdir import JobDir
from vizsla.relocation import (
    HERE,
    recorded_origin,
    relative_record,
    relative_uri_to_job,
    resolve_uri_in_job,
    resolved_record,
)

if TYPE_CHECKING:
    import optuna

    from vizsla.tuning.tune_spec import TuneSpec

log = logging.getLogger("vizsla.tuning")

TUNE_SPEC_NAME = "tune.yaml"


class TuneDir:
    """Paths of a tuning job directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    spec = property(lambda self: self.root / TUNE_SPEC_NAME)
    trials = property(lambda self: self.root / "trials")
    logs = property(lambda self: self.root / "logs")
    analytics = property(lambda self: self.root / "analytics.csv")
    result = property(lambda self: self.root / JobDir.RESULT_FILE)
    tracking = property(lambda self: self.root / "tracking.json")
    log = property(lambda self: self.root / "tune.log")
    reports = property(lambda self: self.root / "reports")
    report = property(lambda self: self.root / "reports" / "tuning.html")
    history_png = property(lambda self: self.root / "reports" / "optimization_history.png")

    def is_tuning_job(self) -> bool:
        return self.spec.is_file()


def load_saved_spec(tune_dir: Path) -> TuneSpec:
    """The TuneSpec a tuning job directory was started with (for --resume, worker and best), placed
    where the folder is now (see `read_saved_mapping`)."""
    from vizsla.tuning.tune_spec import build_tune_spec

    return build_tune_spec(read_saved_mapping(tune_dir), {}, source=str(TuneDir(tune_dir).spec))


def read_saved_mapping(tune_dir: Path) -> dict[str, Any]:
    """tune.yaml of the tuning job folder TUNE_DIR, placed where the folder is now: output TUNE_DIR, the
    study's name as it was (a renamed folder keeps its study), a store inside the folder resolved against
    it; a tune.yaml written with absolute paths has those under its first location moved along."""
    from vizsla.spec import read_yaml
    from vizsla.tuning.analytics import tune_origin

    path = TuneDir(tune_dir).spec
    if not path.is_file():
        raise UserError(f"{tune_dir} is not a tuning job directory (no {TUNE_SPEC_NAME} there)")
    mapping = read_yaml(path)
    root = Path(tune_dir).expanduser().resolve()
    saved = mapping.get("output")
    written_relative = saved == HERE
    origin = None if written_relative else tune_origin(root)
    if not mapping.get("study_name"):  # written before the name was kept: the first folder's name
        first = Path(saved).name if isinstance(saved, str) and saved not in ("", HERE) else root.name
        mapping["study_name"] = mapping.get("name") or first
    storage = mapping.get("storage")
    if isinstance(storage, str) and storage:
        if written_relative and "://" not in storage and not Path(storage).is_absolute():
            mapping["storage"] = str(root / storage)  # a journal file in the folder
        else:
            mapping["storage"] = resolve_uri_in_job(storage, root, origin, relative_is_job=written_relative)
    for settings in (mapping.get("training"), mapping.get("script")):
        tracking = settings.get("tracking") if isinstance(settings, dict) else None
        if isinstance(tracking, dict) and isinstance(tracking.get("uri"), str):
            tracking["uri"] = resolve_uri_in_job(
                tracking["uri"], root, origin, relative_is_job=written_relative
            )
    return {**mapping, "output": str(root)}


def read_tune_result(tune_dir: Path) -> dict[str, Any]:
    """The tuning job's result.json with its paths (tune_dir, the best trial's job and model) absolute
    where the folder is now; OSError / ValueError when it cannot be read."""
    record = json.loads((Path(tune_dir) / JobDir.RESULT_FILE).read_text(encoding="utf-8"))
    if not isinstance(record, dict):
        raise ValueError(f"{tune_dir}/result.json holds no JSON object")
    return resolved_record(record, tune_dir, recorded_origin(record, "tune_dir"))


def check_training_spec(spec: TuneSpec) -> None:
    """Fail before any trial starts when the static training settings cannot make a valid job."""
    from vizsla.spec import build_spec
    from vizsla.tuning.space import trial_spec_dict

    if spec.is_script:
        check_script_settings(spec)
        return
    data_root = (spec.training.get("data") or {}).get("root")
    if not data_root:
        raise SpecError("no data given: pass --data ROOT (or training.data.root in the space file)")
    if "://" not in data_root and not Path(data_root).is_dir():
        raise UserError(f"data folder not found: {data_root}")
    job = build_spec(
        trial_spec_dict(spec.training, {}, output=str(Path(spec.output) / "trials" / "check")),
        source="the tuning job's training settings",
    )
    check_trial_inputs(spec, job)


def check_trial_inputs(spec: TuneSpec, job: Any) -> None:
    """Refuse a model name or a data folder every trial would fail on, before the tuning job writes
    anything: else each trial fails in turn and the budget is spent (a corrected re-run then has none
    left). The data check is the trials' own; its verdicts are cached, so the trials reuse it."""
    import tempfile

    from vizsla.data import prepare_data
    from vizsla.jobdir import JobDir
    from vizsla.models.registry import check_model_name
    from vizsla.tuning.space import resolve_path

    tuned = {resolve_path(name) for name in spec.ranges}
    if "model.name" not in tuned:
        check_model_name(job.model.name)
    if tuned & {"data.root", "data.train_split", "data.valid_split", "data.test_split"}:
        return
    size = job.model.image_size or 224
    with tempfile.TemporaryDirectory(prefix="vizsla-check-") as folder:
        try:
            prepare_data(job.data, JobDir(folder), preprocessing={"input_size": [3, size, size]},
                         progress=False, cache_dir=job.cache_dir)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - not the data's fault (a network, a store): trials retry
            log.warning("could not check the data before the trials: %r", exc)


def check_script_settings(spec: TuneSpec) -> None:
    """Script mode: the entry point and every local channel folder exist before any trial starts."""
    from vizsla.scriptmode.spec import build_script_spec
    from vizsla.tuning.space import script_trial_mapping

    assert spec.script is not None
    script = build_script_spec(
        script_trial_mapping(spec.script, {}, str(Path(spec.output) / "trials" / "check")),
        source="the tuning job's script settings",
    )
    entry = Path(script.entry_point)
    if script.source_dir and not entry.is_absolute():
        entry = Path(script.source_dir) / entry
    if not entry.is_file():
        raise UserError(
            f"entry point not found: {entry}",
            hint="pass --entry-point FILE (relative to --source-dir when one is given)",
        )
    for name, root in script.channels.items():
        if "://" not in root and not Path(root).is_dir():
            raise UserError(f"channel {name!r}: folder not found: {root}")


def run_tuning(
    spec: TuneSpec, *, on_event: Callable[[str], None] | None = None, progress: bool = True
) -> dict[str, Any]:
    """Run (or continue) the tuning job `spec` and return its summary (also written to result.json)."""
    from vizsla.tuning.server import start_trial_server
    from vizsla.tuning.study import open_study, storage_url, study_name_of
    from vizsla.tuning.worker import Worker, WorkerOptions

    _quiet_optuna()
    check_training_spec(spec)
    check_warm_start(spec)
    start_trial_server(spec)  # its imports overlap the study and MLflow setup below
    tune_dir = TuneDir(spec.output)
    tune_dir.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(tune_dir.spec, _spec_yaml(spec, tune_dir.root))
    study = open_study(spec, tune_dir.root)
    if spec.warm_start is not None:
        add_warm_start_trials(study, spec)
    parent = _start_parent_run(spec, tune_dir)
    options = WorkerOptions(
        trials_dir=tune_dir.trials,
        logs_dir=tune_dir.logs,
        max_parallel=spec.max_parallel,
        storage_url=storage_url(spec, tune_dir.root),
        study_name=study_name_of(spec),
        parent_run_id=parent.run_id if parent else None,
        tracking_uri=parent.tracking_uri if parent else None,
        on_event=on_event,
        home=study_home(spec, tune_dir.root),
    )
    started = time.monotonic()
    worker = Worker(study, spec, options)
    with _tune_logging(tune_dir.log), _progress_bar(worker, progress):
        reason = worker.run()
    status = "Stopped" if worker.stop.requested else "Completed"
    summary = finalize(study, spec, tune_dir, status=status, reason=reason, wall_s=time.monotonic() - started)
    if parent is not None:
        _log_trial_models(spec, summary, tune_dir)
        atomic_write_json(tune_dir.result, relative_record(summary, tune_dir.root))  # with the model ids
        _finish_parent_run(parent, summary, tune_dir)
    return summary


def _log_trial_models(spec: TuneSpec, summary: dict[str, Any], tune_dir: TuneDir) -> None:
    """Every completed trial's MLflow model, as a training job logs its own. Trials defer it like their
    plots (in a trial it would cost seconds of MLflow imports): logged here, best first, in one process
    that pays those imports once (~0.1 s a model after them). The best one is registered when the job
    asks (--register NAME); the summary records the best's model id and how many were logged."""
    best = summary.get("best") or {}
    tracking = spec.job_settings.get("tracking") or {}
    if spec.is_script or not tracking.get("log_model", True):
        return
    started = time.perf_counter()
    best_dir = Path(best["job_dir"]).resolve() if best.get("job_dir") else None
    folders = sorted(_completed_trial_folders(tune_dir), key=lambda folder: folder.resolve() != best_dir)
    try:
        from vizsla.tracking.registry import ensure_job_model, register_model, registered_version
    except ImportError as exc:  # tracking never fails the tuning job
        log.warning("could not log the trials' MLflow models: %r", exc)
        return
    logged = 0
    for folder in folders:
        is_best = folder.resolve() == best_dir
        try:
            client, run_id, model_id = ensure_job_model(folder)
            logged += 1
            if is_best:
                best["mlflow_model_id"] = model_id
                register = tracking.get("registered_model_name")
                if register:
                    version = registered_version(client, model_id, register) or register_model(
                        client, register, model_id, run_id
                    )
                    best["registered"] = {"name": register, "version": version}
        except Exception as exc:  # noqa: BLE001 - tracking never fails the tuning job
            log.warning("could not log the MLflow model of %s: %r", folder.name, exc)
    summary["trial_models_logged"] = logged
    if logged:
        log.info("logged %d trials' MLflow models in %.1f s", logged, time.perf_counter() - started)


def _completed_trial_folders(tune_dir: TuneDir) -> list[Path]:
    """This job's own trial folders whose training completed with an MLflow run (warm-start trials
    live in their own tuning job and keep its records)."""
    folders = []
    for folder in sorted(tune_dir.trials.glob("*")) if tune_dir.trials.is_dir() else []:
        job = JobDir(folder)
        try:
            completed = json.loads(job.result.read_text(encoding="utf-8")).get("status") == "Completed"
        except (OSError, ValueError, AttributeError):
            continue
        if completed and job.tracking.is_file():
            folders.append(folder)
    return folders


def run_worker(
    study: optuna.Study,
    spec: TuneSpec,
    output: Path,
    storage: str,
    max_parallel: int,
    on_event: Callable[[str], None] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """`vizsla tune worker`: join a study someone started, run trials into `output`, then summarise."""
    from vizsla.tuning.server import start_trial_server
    from vizsla.tuning.study import study_name_of
    from vizsla.tuning.worker import Worker, WorkerOptions

    _quiet_optuna()
    start_trial_server(spec)
    tune_dir = TuneDir(output)
    tune_dir.root.mkdir(parents=True, exist_ok=True)
    local = spec.model_copy(
        update={"output": str(tune_dir.root), "storage": storage, "max_parallel": max_parallel}
    )
    atomic_write_text(tune_dir.spec, _spec_yaml(local, tune_dir.root))
    options = WorkerOptions(
        trials_dir=tune_dir.trials,
        logs_dir=tune_dir.logs,
        max_parallel=max_parallel,
        storage_url=storage,
        study_name=study_name_of(spec),
        on_event=on_event,
    )
    started = time.monotonic()
    worker = Worker(study, local, options)
    with _tune_logging(tune_dir.log), _progress_bar(worker, progress):
        reason = worker.run()
    status = "Stopped" if worker.stop.requested else "Completed"
    return finalize(study, local, tune_dir, status=status, reason=reason, wall_s=time.monotonic() - started)


def finalize(
    study: optuna.Study, spec: TuneSpec, tune_dir: TuneDir, *, status: str, reason: str, wall_s: float
) -> dict[str, Any]:
    """Write analytics.csv, result.json and the report from what the study holds now."""
    from vizsla.tuning.analytics import summarize, trial_rows, write_analytics_csv
    from vizsla.tuning.report import write_history_png, write_tuning_report

    rows = trial_rows(study, tune_dir.root)
    write_analytics_csv([relative_record(row, tune_dir.root) for row in rows], tune_dir.analytics)
    summary = {
        "job_name": spec.name or tune_dir.root.name,
        "tune_dir": str(tune_dir.root.resolve()),
        "status": status,
        "stop_reason": reason,
        "strategy": spec.strategy,
        "objective": spec.objective.model_dump(),
        "study_name": study.study_name,
        "storage": _storage_text(spec, tune_dir),
        "wall_time_s": round(wall_s, 3),
        **summarize(study, tune_dir.root),
    }
    tune_dir.reports.mkdir(parents=True, exist_ok=True)
    _draw_best_trial_outputs(summary.get("best"))
    try:
        write_tuning_report(
            study, tune_dir.report, title=summary["job_name"], objective_name=spec.objective.metric,
            tune_dir=tune_dir.root,
        )
        write_history_png(study, tune_dir.history_png, spec.objective.metric)
    except Exception:  # noqa: BLE001 - the report must never lose the tuning job's results
        log.exception("could not write the tuning report")
    atomic_write_json(tune_dir.result, relative_record(summary, tune_dir.root))  # the folder can move
    return summary


def _draw_best_trial_outputs(best: dict[str, Any] | None) -> None:
    """Plots and the HTML report of the best trial, which trials defer (outputs: deferred): drawn once here
    instead of ~0.6 s in every trial; `vizsla jobs report TRIAL` draws any other trial's."""
    from vizsla.jobs import write_training_report
    from vizsla.training.plots import write_job_plots

    job_dir = JobDir(best["job_dir"]) if best and best.get("job_dir") else None
    if job_dir is None or not job_dir.result.is_file() or job_dir.training_report.is_file():
        return
    try:
        write_job_plots(job_dir)
        write_training_report(job_dir)
    except Exception:  # noqa: BLE001 - the trial's result.json holds what matters
        log.exception("could not draw the best trial's plots and report in %s", job_dir.root)


def study_home(spec: TuneSpec, tune_dir: Path) -> Path | None:
    """The tuning job folder when its study lives in it (the default journal, or a file store inside
    it): trials are then recorded relative to it, so the folder can move. None for a shared store (an
    RDB server, a file elsewhere): workers elsewhere read those records, so they stay absolute."""
    from vizsla.tuning.study import storage_url

    url = storage_url(spec, tune_dir)
    return Path(tune_dir).resolve() if relative_uri_to_job(url, tune_dir) != url else None


def check_warm_start(spec: TuneSpec) -> None:
    """The warm-start parents are tuning jobs that measure the same, before anything is written."""
    if spec.warm_start is None:
        return
    for parent_dir in spec.warm_start.parents:
        _check_parent(spec, load_saved_spec(Path(parent_dir)), parent_dir)


def add_warm_start_trials(study: optuna.Study, spec: TuneSpec) -> int:
    """Copy the parents' completed trials into this study once (SageMaker's warm start), not counted."""
    import optuna

    from vizsla.tuning.space import to_distributions

    assert spec.warm_start is not None
    if any(t.user_attrs.get("not_counted") == "warm_start" for t in study.get_trials(deepcopy=False)):
        return 0  # copied when the job started; a resumed job does not copy again
    distributions = to_distributions(spec.ranges)
    added = 0
    for parent_dir in spec.warm_start.parents:
        parent_spec = load_saved_spec(Path(parent_dir))
        _check_parent(spec, parent_spec, parent_dir)
        parent_study = _load_parent_study(parent_spec, Path(parent_dir))
        for trial in parent_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if "not_counted" in trial.user_attrs or set(trial.params) != set(distributions):
                continue
            if not all(
                distributions[k]._contains(distributions[k].to_internal_repr(v))
                for k, v in trial.params.items()
            ):
                continue
            attrs = {
                **trial.user_attrs,
                "not_counted": "warm_start",
                "parent": str(Path(parent_dir).resolve()),
                "parent_trial": trial.number,
            }
            study.add_trial(
                optuna.trial.create_trial(
                    params=trial.params,
                    distributions=distributions,
                    value=trial.value,
                    intermediate_values=trial.intermediate_values,
                    user_attrs=attrs,
                )
            )
            added += 1
    log.info("warm start: %d trial(s) from %d parent(s)", added, len(spec.warm_start.parents))
    return added


def _check_parent(spec: TuneSpec, parent: TuneSpec, parent_dir: str) -> None:
    if parent.objective != spec.objective:
        raise UserError(
            f"warm start parent {parent_dir} optimises {parent.objective.metric} "
            f"({parent.objective.type}); this job optimises {spec.objective.metric}"
        )
    if spec.warm_start and spec.warm_start.type == "IdenticalDataAndAlgorithm" and spec.is_script:
        ours_script, theirs_script = spec.script or {}, parent.script or {}
        same = all(ours_script.get(k) == theirs_script.get(k) for k in ("entry_point", "channels"))
        if not same:
            raise UserError(
                f"warm start parent {parent_dir} ran another script or read other channels",
                hint="use --warm-start-type TransferLearning to start from it anyway",
            )
    elif spec.warm_start and spec.warm_start.type == "IdenticalDataAndAlgorithm":
        ours, theirs = spec.training.get("data", {}), parent.training.get("data", {})
        if ours.get("root") != theirs.get("root") or spec.training.get("model") != parent.training.get(
            "model"
        ):
            raise UserError(
                f"warm start parent {parent_dir} used other data or another model",
                hint="use --warm-start-type TransferLearning to start from it anyway",
            )


def _load_parent_study(parent: TuneSpec, parent_dir: Path) -> optuna.Study:
    import optuna

    from vizsla.tuning.study import create_storage, storage_url, study_name_of

    return optuna.load_study(
        study_name=study_name_of(parent), storage=create_storage(storage_url(parent, parent_dir))
    )


def _start_parent_run(spec: TuneSpec, tune_dir: TuneDir) -> Any:
    tracking = spec.job_settings.get("tracking") or {}
    if tracking.get("enabled", True) is False:
        return None
    from vizsla.tracking import ParentRun

    try:
        parent = ParentRun(tracking.get("uri"), tracking.get("experiment", "vizsla"), tune_dir.root)
        previous = (
            json.loads(tune_dir.tracking.read_text()).get("run_id") if tune_dir.tracking.is_file() else None
        )
        params = {
            "strategy": spec.strategy,
            "objective": spec.objective.model_dump(),
            "max_jobs": spec.max_jobs,
            "max_parallel": spec.max_parallel,
            "ranges": {k: v.model_dump() for k, v in spec.ranges.items()},
        }
        parent.start(spec.name or tune_dir.root.name, params, run_id=previous)
        atomic_write_json(
            tune_dir.tracking,
            {"tracking_uri": parent.tracking_uri, "experiment": parent.experiment, "run_id": parent.run_id},
        )
        return parent
    except Exception as exc:  # noqa: BLE001 - tracking never stops a tuning job
        log.warning("MLflow tracking of the tuning job is off: %r", exc)
        return None


def _finish_parent_run(parent: Any, summary: dict[str, Any], tune_dir: TuneDir) -> None:
    best = summary.get("best") or {}
    metrics = {"best_objective": best.get("value"), "best_test_accuracy": best.get("test_accuracy"),
               "best_trial": best.get("number")}
    metrics.update({f"trials_{k.lower()}": v for k, v in (summary.get("counts") or {}).items()})
    try:
        parent.finish(
            summary["status"],
            metrics,
            [tune_dir.analytics, tune_dir.report, tune_dir.result, tune_dir.history_png],
        )
    except Exception as exc:  # noqa: BLE001
        log.warning("could not close the tuning job's MLflow run: %r", exc)


def _quiet_optuna() -> None:
    """Our own lines say what each trial did; Optuna's INFO lines would repeat them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _storage_text(spec: TuneSpec, tune_dir: TuneDir) -> str:
    from vizsla.tuning.study import _redact, storage_url

    return _redact(storage_url(spec, tune_dir.root))


def _spec_yaml(spec: TuneSpec, tune_dir: Path) -> str:
    """tune.yaml as the folder keeps it: output "." and the study's name fixed (a renamed folder keeps its
    study), a store inside the folder relative to it, a local data folder absolute (resumable from any
    working directory); `read_saved_mapping` reads it back where the folder is."""
    import yaml

    from vizsla.tuning.study import study_name_of

    dumped = spec.model_dump(mode="json")
    storage = dumped.get("storage")
    if isinstance(storage, str) and storage and "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())  # a journal file named from the working dir
    dumped.update(output=HERE, study_name=study_name_of(spec),
                  storage=relative_uri_to_job(storage, tune_dir) if storage else storage)
    for settings in (dumped.get("training"), dumped.get("script")):
        tracking = settings.get("tracking") if isinstance(settings, dict) else None
        if isinstance(tracking, dict) and isinstance(tracking.get("uri"), str):
            tracking["uri"] = relative_uri_to_job(tracking["uri"], tune_dir)
    data = (dumped.get("training") or {}).get("data")
    if isinstance(data, dict) and isinstance(data.get("root"), str) and "://" not in data["root"]:
        data["root"] = str(Path(data["root"]).expanduser().resolve())
    return yaml.safe_dump(dumped, sort_keys=False)


class _tune_logging:
    """Copy vizsla's log records into DIR/tune.log for the length of the job."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handler: logging.Handler | None = None

    def __enter__(self) -> None:
        self.handler = logging.FileHandler(self.path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("vizsla")
        logger.addHandler(self.handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)

    def __exit__(self, *exc: object) -> None:
        if self.handler is not None:
            logging.getLogger("vizsla").removeHandler(self.handler)
            self.handler.close()


class _progress_bar:
    """A rich bar of finished counted trials over the budget, refreshed by a small thread."""

    def __init__(self, worker: Any, enabled: bool) -> None:
        self.worker = worker
        self.enabled = enabled
        self._stop = False
        self._thread: Any = None
        self._progress: Any = None

    def __enter__(self) -> None:
        if not self.enabled:
            return
        import threading

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("tuning"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            transient=False,
        )
        self._progress.start()
        task = self._progress.add_task("", total=self.worker.max_jobs())

        def refresh() -> None:
            from vizsla.tuning.worker import FINISHED, counts_toward_budget

            while not self._stop:
                try:
                    trials = [t for t in self.worker.trials() if counts_toward_budget(t)]
                    done = sum(t.state in FINISHED for t in trials)
                    best = _best_text(self.worker)
                    self._progress.update(
                        task,
                        completed=done,
                        total=self.worker.max_jobs(),
                        description=f"{len(self.worker.running)} running{best}",
                    )
                except Exception:  # noqa: BLE001 - the bar is cosmetic
                    pass
                time.sleep(0.5)

        self._thread = threading.Thread(target=refresh, daemon=True)
        self._thread.start()

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._progress is not None:
            from vizsla.tuning.worker import FINISHED, counts_toward_budget

            try:  # the last refresh, so the bar ends on what happened
                trials = [t for t in self.worker.trials() if counts_toward_budget(t)]
                task = self._progress.task_ids[0]
                done = sum(t.state in FINISHED for t in trials)
                self._progress.update(task, completed=done, description=f"done{_best_text(self.worker)}")
            except Exception:  # noqa: BLE001 - the bar is cosmetic
                pass
            self._progress.stop()


def _best_text(worker: Any) -> str:
    try:
        best = worker.study.best_trial
    except ValueError:
        return ""
    return f", best {worker.spec.objective.metric} {best.value:.4f} (trial {best.number})"
