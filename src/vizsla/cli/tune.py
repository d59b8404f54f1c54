"""`vizsla tune`: tuning jobs (SageMaker's vocabulary, Optuna underneath), their workers and best trial."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from vizsla.cli import options as o
from vizsla.cli.options import Flag, command, flag, given, in_panel, nest, sets
from vizsla.errors import UserError
from vizsla.scriptmode.spec import ScriptJobSpec
from vizsla.tuning.tune_spec import TuneSpec

app = typer.Typer(
    help="Tune training hyperparameters: Bayesian (TPE), Random, Grid or Hyperband, in parallel, resumable.",
    invoke_without_command=True,
    no_args_is_help=False,
)

# --- the options of `vizsla tune`: flag -> TuneSpec field, whose description is the help ------------------


def _tune(name: str, decls: str, path: str = "", **kw: Any) -> Flag:
    return flag(name, decls, path, TuneSpec, **kw)


def _paths(parents: list[Path]) -> list[str] | None:
    return [str(p) for p in parents] or None


OUTPUT = _tune("output", "--output -o", "output", kind=Path, convert=str)
MAX_PARALLEL = _tune("max_parallel", "--max-parallel", "max_parallel", kind=int)
DEBUG_HOOK = flag(
    "debug_hook", "--debug-hook", "debug_hook", ScriptJobSpec, kind=bool, default=False, convert=sets(True),
    help="Give each trial the default smdebug hook config (SageMaker's tuning jobs give none).",
)  # fmt: skip
TRAINING = (o.DATA, o.MODEL, o.EPOCHS, o.FINETUNE)  # the static training job's flags (Vizsla's trainer only)
SCRIPT = (
    o.ENTRY_POINT,
    o.SOURCE_DIR,
    o.CHANNELS,
    o.HYPERPARAMETERS,
    o.METRIC_DEFINITIONS,
    o.PYTHON,
    DEBUG_HOOK,
)
# fmt: off
TUNE_FLAGS = (  # grouped by help panel, in the order the panels are shown
    *in_panel(
        "Run",
        o.DATA,
        OUTPUT,
        _tune("resume", "--resume", kind=Path,
              help="Continue the tuning job in this directory with its saved settings."),
        _tune("storage", "--storage", "storage"),
        _tune("study_name", "--study-name", "study_name"),
        o.NO_TRACKING,
        o.REGISTER,
        o.NO_LOG_MODEL,
        o.TENSORBOARD,
        o.QUIET,
    ),
    *in_panel(
        "Search",
        _tune(
            "space", "--space -s", kind=Path,
            help="YAML of the hyperparameter ranges (Continuous/Integer/Categorical, scaling Auto/Linear/"
            "Logarithmic/ReverseLogarithmic), SageMaker's ParameterRanges JSON shape, or a whole tuning "
            "spec; or hyperparameter names (lr,batch_size) to search their default ranges.",
        ),
        _tune("strategy", "--strategy", "strategy"),
        _tune("metric", "--objective-metric --objective", "objective.metric"),
        _tune("objective_type", "--objective-type", "objective.type"),
        _tune(
            "minimize", "--minimize/--maximize", kind=bool, settings={"show_default": False},
            help="Shorthand for --objective-type Minimize / Maximize.",
        ),
        _tune("early_stopping", "--early-stopping", "early_stopping"),
        _tune("warm_start", "--warm-start", "warm_start.parents", kind=list[Path], convert=_paths),
        _tune("warm_start_type", "--warm-start-type", "warm_start.type"),
        _tune("seed", "--seed", "random_seed", kind=int),
    ),
    *in_panel(
        "Static training settings",
        _tune(
            "config", "--config -c", kind=Path,
            help="YAML job spec of the static training settings (as for `vizsla train`).",
        ),
        o.MODEL,
        o.EPOCHS,
        o.FINETUNE,
    ),
    *in_panel(
        "Budget and completion",
        _tune("max_jobs", "--max-jobs", "max_jobs", kind=int),
        MAX_PARALLEL,
        _tune("trial_nproc", "--trial-nproc", "trial_nproc", kind=int),
        _tune("target_value", "--target-value", "completion.target_value", kind=float),
        _tune("not_improving", "--max-jobs-not-improving", "completion.max_jobs_not_improving", kind=int),
        _tune("max_runtime", "--max-runtime", "completion.max_runtime_s", kind=float),
    ),
    *in_panel("Your own training script (SageMaker script mode)", *SCRIPT),
)
# fmt: on
TUNING = tuple(f for f in TUNE_FLAGS if f.spec is TuneSpec)  # the flags that fill the TuneSpec itself


@app.callback(invoke_without_command=True)
@command(*TUNE_FLAGS, context=True)
def tune(ctx: typer.Context, **options: Any) -> None:
    """Run a tuning job: many training jobs, one Optuna study. Re-running the same command resumes it.

    With --entry-point the trials run your own SageMaker training script (script mode).
    """
    if ctx.invoked_subcommand is not None:
        return
    from vizsla.tuning.job import load_saved_spec, run_tuning

    console = Console(stderr=True, highlight=False)
    resume = options["resume"]
    if resume is not None:
        spec = load_saved_spec(resume)
        console.print(f"resuming tuning job [bold]{resume}[/bold]")
    else:
        spec = _new_spec(console, options)
    quiet = options["quiet"]
    summary = run_tuning(spec, on_event=console.print if not quiet else None, progress=not quiet)
    _print_summary(console, summary)


def _new_spec(console: Console, options: dict[str, Any]) -> TuneSpec:
    """The TuneSpec of --space (or the job already in --output), --config and the flags given."""
    from vizsla.spec import deep_merge, read_yaml
    from vizsla.tuning.default_ranges import describe, is_name_list, ranges_from_names
    from vizsla.tuning.job import TuneDir, read_saved_mapping
    from vizsla.tuning.tune_spec import build_tune_spec

    output, space, config = options["output"], options["space"], options["config"]
    if output is None:
        raise UserError("no tuning job directory given: pass --output DIR (or --resume DIR)")
    base: dict[str, Any] = {}
    if space and is_name_list(space):  # --space lr,batch_size: default ranges for named hyperparameters
        base = {"ranges": ranges_from_names(str(space))}
        console.print(f"search space: {describe(base['ranges'])}")
    elif space:
        base = read_yaml(space)
    if not space and TuneDir(output).is_tuning_job():
        base = read_saved_mapping(output)  # the same command without --space: continue the job
    elif TuneDir(output).is_tuning_job() and not options["study_name"]:  # continue its study, even renamed
        options["study_name"] = read_saved_mapping(output).get("study_name")
    training = read_yaml(config) if config else {}
    training.pop("output", None)
    if options["minimize"] is not None and options["objective_type"] is None:
        options["objective_type"] = "Minimize" if options["minimize"] else "Maximize"
    script = _script_overrides(training, options)
    # --register: the best trial's model; --no-log-model: no trial logs one
    trial_flags = (*TRAINING, o.NO_TRACKING, o.REGISTER, o.NO_LOG_MODEL, o.TENSORBOARD)
    overrides = nest(given(TUNING, options) | given(trial_flags, options, "training."))
    if script is not None:
        overrides.pop("training", None)
        overrides["script"] = script
    elif training:
        overrides["training"] = deep_merge(training, overrides.get("training", {}))
    if not base and not space:
        raise UserError("no search space given: pass --space space.yaml")
    return build_tune_spec(base, overrides, source=str(space) if space else "command line")


def _script_overrides(config: dict[str, Any], options: dict[str, Any]) -> dict[str, Any] | None:
    """The script section from --entry-point & co. (over a script job YAML given as --config), or None."""
    from vizsla.scriptmode.spec import is_script_spec
    from vizsla.spec import deep_merge

    base = dict(config) if config and is_script_spec(config) else None
    if options["entry_point"] is None and base is None:
        if any(options[f.name] for f in SCRIPT[1:]):
            raise UserError(
                "--channel, --hyperparameters, --metric-definition, --source-dir, --python and "
                "--debug-hook tune a script: pass --entry-point too"
            )
        return None
    given_trainer = [f.decls[0] for f in TRAINING if options[f.name] is not None]
    if given_trainer:
        raise UserError(
            f"{', '.join(given_trainer)} set Vizsla's own trainer; a script takes its inputs as --channel "
            "NAME=PATH and its arguments as --hyperparameters KEY=VALUE"
        )
    script: dict[str, Any] = base or {}
    script.pop("kind", None)
    words = [pair for item in options["hyperparameters"] or [] for pair in item.split()]  # "a=1 b=2" too
    values = {**options, "hyperparameters": words or None}
    fields = given((*SCRIPT, o.NO_TRACKING), values)
    parsed = fields.pop("metric_definitions", None)
    script = deep_merge(script, nest(fields))
    if parsed:  # a definition given replaces the YAML's of the same name; the others stay
        names = {d["name"] for d in parsed}
        kept = [d for d in script.get("metric_definitions") or [] if _definition_name(d) not in names]
        script["metric_definitions"] = kept + parsed
    return script


def _definition_name(item: Any) -> Any:
    return item.get("name", item.get("Name")) if isinstance(item, dict) else None


@app.command("worker")
@command(
    flag("study", "--study", default=..., help="Name of the study to join."),
    flag("storage", "--storage", default=..., help="The study's storage URL (postgresql://...)."),
    flag(
        "output",
        "--output -o",
        kind=Path,
        help="Where this worker writes its trials (default runs/<study>-<host>).",
    ),
    replace(MAX_PARALLEL, default=1),
    o.QUIET,
)
def worker(**options: Any) -> None:
    """Join a tuning job from another machine (or process): run its trials until the shared cap is used."""
    import os

    from vizsla.tuning.job import run_worker
    from vizsla.tuning.study import load_worker_study

    study, storage, quiet = options["study"], options["storage"], options["quiet"]
    console = Console(stderr=True, highlight=False)
    study_obj, spec = load_worker_study(storage, study, seed_offset=os.getpid())
    out = options["output"] or Path("runs") / f"{study}-{os.uname().nodename}"
    console.print(f"worker joined study [bold]{study}[/bold]; trials go to {out}")
    summary = run_worker(
        study_obj,
        spec,
        out,
        storage,
        options["max_parallel"],
        on_event=console.print if not quiet else None,
        progress=not quiet,
    )
    _print_summary(console, summary)


@app.command("best")
def best(
    tune_dir: Path = typer.Argument(..., help="A tuning job directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print the best trial: its hyperparameters, objective, test accuracy and model path."""
    import optuna

    from vizsla.tuning.analytics import summarize
    from vizsla.tuning.job import load_saved_spec
    from vizsla.tuning.study import create_storage, storage_url, study_name_of

    spec = load_saved_spec(tune_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name_of(spec), storage=create_storage(storage_url(spec, tune_dir))
    )
    summary = summarize(study, tune_dir)
    best_trial = summary.get("best")
    if not best_trial:
        raise UserError(f"no trial of {tune_dir} has completed yet")
    record = {"objective": spec.objective.model_dump(), **best_trial}
    if as_json:
        typer.echo(json.dumps(record, indent=2, default=str))
        return
    console = Console()
    console.print(f"best trial [bold]{best_trial.get('number')}[/bold] of {tune_dir}")
    console.print(f"  {spec.objective.metric} ({spec.objective.type}): {best_trial.get('value')}")
    if best_trial.get("test_accuracy") is not None:
        console.print(f"  test_accuracy: {best_trial['test_accuracy']}")
    for key, value in (best_trial.get("hyperparameters") or {}).items():
        console.print(f"  {key}: {value}")
    console.print(f"  job directory: {best_trial.get('job_dir')}")
    console.print(f"  model: {best_trial.get('model_path')}")
    for warning in best_trial.get("warnings") or []:
        console.print(f"  [yellow]warning:[/] {warning}", highlight=False)


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    counts = summary.get("counts") or {}
    shown = ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v)
    colour = "green" if summary.get("status") == "Completed" else "yellow"
    console.print(
        f"[bold {colour}]{summary.get('status')}[/] {summary.get('job_name')} "
        f"in {summary.get('wall_time_s', 0):.0f} s ({summary.get('stop_reason')}): {shown}"
    )
    best_trial = summary.get("best")
    if best_trial:
        params = ", ".join(f"{k}={v}" for k, v in (best_trial.get("hyperparameters") or {}).items())
        test = best_trial.get("test_accuracy")
        test_text = f", test_accuracy {test:.4f}" if isinstance(test, int | float) else ""
        console.print(
            f"  best trial {best_trial.get('number')}: {summary['objective']['metric']} "
            f"{best_trial.get('value'):.4f}{test_text} ({params})"
        )
        console.print(f"  model: {best_trial.get('model_path')}")
        registered = best_trial.get("registered")
        if registered:
            console.print(f"  registered: models:/{registered['name']}/{registered['version']}")
        for warning in best_trial.get("warnings") or []:
            console.print(f"  [yellow]warning:[/] {warning}", highlight=False)
    console.print(f"  tuning job directory: {summary.get('tune_dir')}")
