"""`vizsla jobs`: list, describe and report training jobs from their directories, like SageMaker's console.

Everything shown is read from the job directories (spec.yaml, result.json, metrics.jsonl), so the
commands work without MLflow and on jobs copied from another machine.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
import yaml
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vizsla.errors import UserError
from vizsla.infra.formatting import format_duration, format_number, format_time
from vizsla.jobdir import JobDir
from vizsla.jobhealth import job_problems
from vizsla.training.report import total_duration
from vizsla.training.timing import ordered_phases

app = typer.Typer(no_args_is_help=True, help="List, describe and report training jobs.")

MAX_DEPTH = 3  # runs/job, runs/group/job and runs/tune-001/trials/trial-7
SKIPPED_DIRS = {"mlartifacts", "mlruns"}  # MLflow keeps copies of spec.yaml there: not jobs
MAX_CLASSES_IN_FULL = 10  # above this, describe shows the 5 best and 5 worst classes by f1
STATUS_STYLE = {"Completed": "green", "InProgress": "cyan", "Failed": "red", "Stopped": "yellow"}


class Status(StrEnum):
    Completed = "Completed"
    InProgress = "InProgress"
    Failed = "Failed"
    Stopped = "Stopped"
    Unknown = "Unknown"


class SortKey(StrEnum):
    start = "start"
    duration = "duration"
    name = "name"


@dataclass(frozen=True)
class JobSummary:
    """One row of `vizsla jobs list`, read from a job directory."""

    path: Path
    name: str
    status: str
    start: datetime | None
    duration_s: float | None
    model: str | None
    epochs: str
    valid_accuracy: float | None
    test_accuracy: float | None
    problem: str | None = None  # what is wrong although the status may say Completed (see job_problems)

    @property
    def shown_status(self) -> str:
        """The status with what is wrong, e.g. "Completed (model missing)"."""
        return f"{self.status} ({self.problem})" if self.problem else self.status


def find_job_dirs(runs_dir: Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Folders holding a spec.yaml, up to `max_depth` levels below `runs_dir` (not inside a job's outputs)."""
    if JobDir(runs_dir).exists():
        return [runs_dir]
    found: list[Path] = [runs_dir] if _is_tuning_job(runs_dir) else []
    level = [runs_dir]
    for _ in range(max_depth):
        children = [c for d in level for c in _subdirs(d)]
        found += [c for c in children if JobDir(c).exists() or _is_tuning_job(c)]
        level = [c for c in children if not JobDir(c).exists()]  # a tuning job's trials are listed too
    return sorted(found)


def _is_tuning_job(path: Path) -> bool:
    return (path / "tune.yaml").is_file()


def _default_model() -> str:
    from vizsla.spec import ModelSpec

    return str(ModelSpec.model_fields["name"].default)


def _tuning_model(spec: dict[str, Any]) -> str:
    """What a tuning job trains: a script tuning job's entry point, else its training spec's model."""
    script = spec.get("script")
    if isinstance(script, dict) and script.get("entry_point"):
        return str(script["entry_point"])
    return ((spec.get("training") or {}).get("model") or {}).get("name") or _default_model()


def summarize_tuning_job(path: Path) -> JobSummary:
    """A tuning job as one row: its status, trials done of the budget, and its best trial's accuracies."""
    try:
        spec = yaml.safe_load((path / "tune.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        spec = {}
    problem = None
    try:
        result = json.loads((path / JobDir.RESULT_FILE).read_text())
    except FileNotFoundError:
        result = {}
    except (OSError, ValueError):
        result, problem = {}, "result.json corrupt"
    if not isinstance(result, dict):
        result, problem = {}, "result.json corrupt"
    counts = result.get("counts") or {}
    best = result.get("best") or {}
    done = sum(counts.get(k, 0) for k in ("Completed", "Pruned", "Failed"))
    objective = (spec.get("objective") or {}).get("metric")
    start = datetime.fromtimestamp((path / "tune.yaml").stat().st_mtime).astimezone()
    return JobSummary(
        path=path,
        name=result.get("job_name") or path.name,
        status=result.get("status") or Status.InProgress.value,
        start=start,
        duration_s=result.get("wall_time_s"),
        model=_tuning_model(spec),
        epochs=f"{done}/{spec.get('max_jobs', '?')} trials",
        valid_accuracy=best.get("value") if objective == "valid_accuracy" else None,
        test_accuracy=best.get("test_accuracy"),
        problem=problem,
    )


def _subdirs(folder: Path) -> Iterator[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError:  # unreadable or vanished while listing
        return
    for entry in entries:
        if entry.is_dir() and not entry.name.startswith(".") and entry.name not in SKIPPED_DIRS:
            yield entry


def _read_spec(job: JobDir) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(job.spec.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return spec if isinstance(spec, dict) else {}


def _read_result(job: JobDir) -> dict[str, Any]:
    try:
        return job.read_result() or {}
    except (OSError, ValueError):  # torn or unreadable result.json: show the job as Unknown
        return {}


def _parse_time(iso: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(iso).astimezone() if iso else None
    except ValueError:
        return None


def _last_epoch(job: JobDir) -> dict[str, Any]:
    epochs = [r for r in job.read_metrics() if r.get("kind") == "epoch"]
    return epochs[-1] if epochs else {}


def summarize_job(path: Path) -> JobSummary:
    """Status, times, model and accuracies of one job; a job without result.json is Unknown."""
    if _is_tuning_job(path) and not JobDir(path).exists():
        return summarize_tuning_job(path)
    job = JobDir(path)
    spec, result = _read_spec(job), _read_result(job)
    problem = ", ".join(p.label for p in job_problems(job)) or None
    if spec.get("kind") == "script":
        return summarize_script_job(path, spec, result, problem)
    metrics = result.get("metrics") or {}
    last = {} if "valid_accuracy" in metrics else _last_epoch(job)  # a running job: its latest epoch
    start = _parse_time(result.get("start_time"))
    if start is None:
        start = datetime.fromtimestamp(job.spec.stat().st_mtime).astimezone()
    planned = (spec.get("train") or {}).get("epochs")
    done = result.get("epochs_completed")
    return JobSummary(
        path=path,
        name=result.get("job_name") or spec.get("name") or path.name,
        status=result.get("status") or Status.Unknown.value,
        start=start,
        duration_s=job_duration(result),
        model=(spec.get("model") or {}).get("name"),
        epochs=f"{'?' if done is None else done}/{'?' if planned is None else planned}",
        valid_accuracy=metrics.get("valid_accuracy", last.get("valid_accuracy")),
        test_accuracy=metrics.get("test_accuracy"),
        problem=problem,
    )


def job_duration(result: Mapping[str, Any]) -> float | None:
    """Seconds the job took from its command's start: over all attempts for a resumed job."""
    total = result.get("total_duration_s")
    return total if isinstance(total, int | float) else result.get("duration_s")


def summarize_script_job(
    path: Path, spec: dict[str, Any], result: dict[str, Any], problem: str | None = None
) -> JobSummary:
    """A script-mode job: model = the entry point, accuracy column = the first metric definition's value."""
    definitions = spec.get("metric_definitions") or []
    first = definitions[0].get("name") if definitions and isinstance(definitions[0], dict) else None
    start = _parse_time(result.get("start_time"))
    if start is None:
        start = datetime.fromtimestamp(JobDir(path).spec.stat().st_mtime).astimezone()
    return JobSummary(
        path=path,
        name=result.get("job_name") or spec.get("name") or path.name,
        status=result.get("status") or Status.Unknown.value,
        start=start,
        duration_s=result.get("duration_s"),
        model=spec.get("entry_point"),
        epochs="script",
        valid_accuracy=(result.get("metrics") or {}).get(first) if first else None,
        test_accuracy=None,
        problem=problem,
    )


def sort_jobs(jobs: list[JobSummary], key: SortKey) -> list[JobSummary]:
    """Newest first, longest first, or by name; jobs missing the value go last."""
    if key is SortKey.name:
        return sorted(jobs, key=lambda j: (j.name.lower(), str(j.path)))
    if key is SortKey.duration:
        return sorted(jobs, key=lambda j: (j.duration_s is None, -(j.duration_s or 0.0)))
    return sorted(jobs, key=lambda j: (j.start is None, -(j.start.timestamp() if j.start else 0.0)))


def _status_text(status: str, problem: str | None = None) -> Text:
    if problem:  # a job that looks finished but cannot be used as it is
        return Text(f"{status} ({problem})", style="bold red")
    return Text(status, style=STATUS_STYLE.get(status, "dim"))


def _job_row(job: JobSummary, runs_dir: Path) -> dict[str, Text | str]:
    # the folder path is what `describe` takes; the job's own name only when it differs
    relative = job.path.relative_to(runs_dir).as_posix() if job.path != runs_dir else job.path.name
    name = Text(relative)
    if job.name != job.path.name:
        name.append(f" ({job.name})", style="dim")
    return {
        "Name": name,
        "Status": _status_text(job.status, job.problem),
        "Start time": job.start.strftime("%Y-%m-%d %H:%M") if job.start else "—",
        "Duration": format_duration(job.duration_s),
        "Model": Text(job.model or "—"),
        "Epochs": job.epochs,
        "Valid acc": format_number(job.valid_accuracy),
        "Test acc": format_number(job.test_accuracy),
    }


def _jobs_table(jobs: list[JobSummary], runs_dir: Path, width: int) -> Table:
    """SageMaker-like job table; narrow terminals lose Model (< 110 columns), then Start time (< 90)."""
    dropped = {"Model"} if width < 110 else set()
    dropped |= {"Start time"} if width < 90 else set()
    rows = [_job_row(job, runs_dir) for job in jobs]
    columns = [c for c in rows[0] if c not in dropped] if rows else []
    table = Table(title=f"Training jobs in {runs_dir}", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for column in columns:
        free = column in ("Name", "Model")  # only names fold; times, statuses and numbers keep one line
        numeric = column in ("Duration", "Epochs", "Valid acc", "Test acc")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold", no_wrap=not free,
                         min_width=10 if free else None)
    for row in rows:
        table.add_row(*[row[c] for c in columns])
    if any(job.problem for job in jobs):
        table.caption = "Jobs marked in red cannot be used as they are: `vizsla jobs describe DIR` says why."
        table.caption_justify = "left"
    return table


def _console() -> Console:
    """A console that does not crop tables when output goes to a pipe or file (unless COLUMNS says so)."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=160)
    return console


@app.command("list")
def list_jobs(
    runs_dir: Path = typer.Argument(Path("runs"), help="Folder holding job directories."),
    status: Status | None = typer.Option(None, "--status", case_sensitive=False,
                                         help="Only jobs in this state."),
    sort: SortKey = typer.Option(SortKey.start, "--sort", help="start (newest first), duration or name."),
) -> None:
    """List the jobs under RUNS_DIR with status, times, model and accuracies."""
    if not runs_dir.is_dir():
        raise UserError(f"runs folder not found: {runs_dir}", hint="Pass the folder your jobs write to.")
    jobs = [summarize_job(path) for path in find_job_dirs(runs_dir)]
    if status is not None:
        jobs = [job for job in jobs if job.status == status.value]
    console = _console()
    if not jobs:
        which = f" with status {status.value}" if status else ""
        console.print(f"No training jobs{which} in {runs_dir}; start one with `vizsla train`.",
                      highlight=False)
        return
    console.print(_jobs_table(sort_jobs(jobs, sort), runs_dir, console.width))


def _require_job(job_dir: Path) -> JobDir:
    job = JobDir(job_dir)
    if not job.exists():
        raise UserError(f"{job_dir} is not a vizsla job directory (no spec.yaml)",
                        hint="Run `vizsla jobs list RUNS_DIR` to see the job directories.")
    return job


def _key_value_table(title: str, rows: list[tuple[str, Any]]) -> Table | None:
    """A titled two-column table of the rows that have a value; None when none has."""
    rows = [(key, value) for key, value in rows if value is not None and value != ""]
    if not rows:
        return None
    table = Table(title=title, title_justify="left", title_style="bold", show_header=False, box=None,
                  padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else Text(str(value)))
    return table


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _last_activity(job: JobDir) -> str | None:
    """When the job last wrote progress: a running job that stopped writing long ago was probably killed."""
    times = [p.stat().st_mtime for p in (job.metrics, job.last_checkpoint, job.result) if p.is_file()]
    if not times:
        return None
    latest = max(times)
    stamp = datetime.fromtimestamp(latest).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp} ({format_duration(time.time() - latest)} ago)"


def _summary_rows(job: JobDir, result: dict[str, Any], spec: dict[str, Any]) -> list[tuple[str, Any]]:
    status = result.get("status") or Status.Unknown.value
    problems = job_problems(job)
    best = result.get("best_metric") or {}
    best_epoch = result.get("best_epoch")
    planned = (spec.get("train") or {}).get("epochs", "?")
    return [
        ("Name", result.get("job_name") or spec.get("name") or job.root.name),
        ("Directory", str(job.root.resolve())),
        ("Status", _status_text(status, ", ".join(p.label for p in problems) or None)),
        *[("Problem", Text(p.message, style="red")) for p in problems],
        ("Failure reason", result.get("failure_reason")),
        ("Stop reason", result.get("stop_reason")),
        ("Start", format_time(result.get("start_time")) if result else None),
        ("End", format_time(result.get("end_time")) if result.get("end_time") else None),
        ("Duration", None if result.get("duration_s") is None else format_duration(result["duration_s"])),
        ("Attempt start", _attempt_start(result)),
        ("Total duration", total_duration(result)),
        ("Last activity", _last_activity(job) if status in ("InProgress", "Unknown") else None),
        *(_script_rows(result, spec) if spec.get("kind") == "script" else
          [("Epochs", f"{result.get('epochs_completed', 0)} of {planned}")]),
        ("Processes", _processes(spec)),
        ("Best epoch", None if best_epoch is None else f"{best_epoch + 1} (1-based)"),
        ("Best metric", f"{best.get('name')} = {format_number(best.get('value'))}" if best else None),
        ("Test metrics from", result.get("test_source")),
    ]


def _attempt_start(result: Mapping[str, Any]) -> str | None:
    """A resumed job's start of this attempt (Start stays the first attempt's)."""
    attempt_start = result.get("attempt_start_time")
    if not attempt_start or attempt_start == result.get("start_time"):
        return None
    return format_time(attempt_start)


def _phase_rows(result: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Seconds and share of each phase of the (last) attempt: startup, validate, extract, train, ..."""
    phases = ordered_phases(result.get("phases") or {})
    total = sum(seconds for _, seconds in phases)
    return [(name, f"{format_duration(s):>9} {100 * s / total:5.1f}%") for name, s in phases]


def _processes(spec: dict[str, Any]) -> str | None:
    """A distributed job's processes, backend and batch split (None for a one-process job)."""
    dist = spec.get("distributed") or spec.get("distribution") or {}
    world = dist.get("world_size") or dist.get("nproc_per_node")
    if not world or (world == 1 and not dist.get("nproc_per_node")):
        return None
    if spec.get("kind") == "script":
        nodes = dist.get("nnodes", 1)
        return f"{world} per machine x {nodes} machine(s) (torchrun)"
    batch = (spec.get("train") or {}).get("batch_size")
    return (
        f"{world} ({dist.get('backend')}, torchrun): global batch {batch}, "
        f"{dist.get('per_process_batch_size')} per process, lr {format_number(dist.get('effective_lr'))}"
    )


def _script_rows(result: dict[str, Any], spec: dict[str, Any]) -> list[tuple[str, Any]]:
    """What describe shows of a script job instead of epochs: the script, its exit and its metric regexes."""
    unmatched = result.get("unmatched_metric_definitions") or []
    return [
        ("Entry point", spec.get("entry_point")),
        ("Source dir", spec.get("source_dir")),
        ("Exit code", result.get("exit_code")),
        ("Signal", result.get("signal")),
        ("Channels", ", ".join(f"{k}={v}" for k, v in (spec.get("channels") or {}).items()) or None),
        ("Unmatched metrics", ", ".join(unmatched) or None),
    ]


def _per_class_table(per_class: Mapping[str, Any]) -> Table | None:
    """All classes, or the 5 best and 5 worst by f1 when there are many."""
    labels = per_class.get("labels") or []
    if not labels:
        return None
    columns = ("precision", "recall", "f1", "support")
    rows = [(str(label), *[(per_class.get(c) or [None] * len(labels))[i] for c in columns])
            for i, label in enumerate(labels)]
    title = f"Per-class metrics ({per_class.get('split', 'test')})"
    if len(rows) > MAX_CLASSES_IN_FULL:
        rows = sorted(rows, key=lambda r: -(r[3] or 0.0))
        rows = rows[:5] + [("…", None, None, None, None)] + rows[-5:]
        title += f", 5 best and 5 worst of {len(labels)} by f1"
    table = Table(title=title, title_justify="left", title_style="bold", min_width=len(title))
    table.add_column("class")
    for column in columns:
        table.add_column(column, justify="right")
    for label, *values in rows:
        table.add_row(Text(label), *[format_number(v) if v is not None else "" for v in values])
    return table


def _data_rows(job: JobDir, data: Mapping[str, Any]) -> list[tuple[str, Any]]:
    images = data.get("images") or {}
    bad = data.get("bad_files")
    listed = f" (listed in {job.bad_files.resolve()})" if bad and job.bad_files.is_file() else ""
    bad_text = None if bad is None else f"{bad}{listed}"
    return [("Classes", data.get("classes")),
            *[(f"{split.capitalize()} images", count) for split, count in images.items()],
            ("Bad files", bad_text)]


def _output_rows(job: JobDir, result: Mapping[str, Any]) -> list[tuple[str, Any]]:
    model = Path(result.get("best_model_path") or job.model_dir)
    paths = [("Model", model), ("Loss plot", job.loss_plot), ("Confusion matrix", job.confusion_matrix_plot),
             ("Report", job.training_report)]
    rows: list[tuple[str, Any]] = [(label, str(path.resolve())) for label, path in paths if path.exists()]
    mlflow = result.get("mlflow") or _tracking_info(job)
    if mlflow.get("run_id"):
        rows += [("MLflow run id", mlflow["run_id"]), ("MLflow experiment", mlflow.get("experiment")),
                 ("MLflow tracking URI", mlflow.get("tracking_uri"))]
    return rows


def _tracking_info(job: JobDir) -> dict[str, Any]:
    try:
        info = json.loads(job.tracking.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


@app.command("describe")
def describe_job(
    job_dir: Path = typer.Argument(..., help="A job directory (holds spec.yaml)."),
    as_json: bool = typer.Option(False, "--json", help="Print result.json as it is."),
) -> None:
    """Show a job's status, times, hyperparameters, metrics, per-class results, data and outputs."""
    job = _require_job(job_dir)
    if as_json:
        if not job.result.is_file():
            raise UserError(f"{job_dir} has no result.json yet (the job has not started or was killed early)")
        typer.echo(job.result.read_text().rstrip("\n"))
        return
    spec, result = _read_spec(job), _read_result(job)
    if spec.get("kind") == "script":  # the script's own hyperparameters, even when there are none
        hyperparameters = spec.get("hyperparameters") or {}
    else:
        hyperparameters = result.get("hyperparameters") or _flatten(spec)
    metrics = result.get("metrics") or {}
    sections = [
        _key_value_table("Job", _summary_rows(job, result, spec)),
        _key_value_table("Time per phase", _phase_rows(result)),
        _key_value_table("Hyperparameters", sorted(hyperparameters.items())),
        _key_value_table("Final metrics", [(k, format_number(v)) for k, v in metrics.items()]),
        _per_class_table(result.get("per_class") or {}),
        _key_value_table("Data", _data_rows(job, result.get("data") or {})),
        _key_value_table("Outputs", _output_rows(job, result)),
    ]
    console = _console()
    for section in sections:
        if section is not None:
            console.print(section)
            console.print()


@app.command("report")
def report_job(job_dir: Path = typer.Argument(..., help="A job directory (holds spec.yaml).")) -> None:
    """Rebuild the job's plots and its self-contained HTML report (reports/training.html)."""
    from vizsla.jobs import write_training_report
    from vizsla.training.plots import write_job_plots

    job = _require_job(job_dir)
    write_job_plots(job)
    path = write_training_report(job)
    Console().print(f"Wrote {path}", highlight=False)
