"""`vizsla tune`: tuning jobs (SageMaker's vocabulary, Optuna underneath), their workers and best trial."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from vizsla.errors import UserError

SEARCH = "Search"
BUDGET = "Budget and completion"
RUN = "Run"
TRAIN = "Static training settings"
SCRIPT = "Your own training script (SageMaker script mode)"

app = typer.Typer(
    help="Tune training hyperparameters: Bayesian (TPE), Random, Grid or Hyperband, in parallel, resumable.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@app.callback(invoke_without_command=True)
def tune(
    ctx: typer.Context,
    data: str = typer.Option(
        None, "--data", help="Image folder (as for `vizsla train`).", rich_help_panel=RUN
    ),
    output: Path = typer.Option(None, "--output", "-o", help="Tuning job directory.", rich_help_panel=RUN),
    space: Path = typer.Option(
        None,
        "--space",
        "-s",
        help="YAML of the hyperparameter ranges (Continuous/Integer/Categorical, scaling Auto/Linear/"
        "Logarithmic/ReverseLogarithmic), SageMaker's ParameterRanges JSON shape, or a whole tuning spec; "
        "or hyperparameter names (lr,batch_size) to search their default ranges.",
        rich_help_panel=SEARCH,
    ),
    config: Path = typer.Option(
        None,
        "--config",
        "-c",
        help="YAML job spec of the static training settings (as for `vizsla train`).",
        rich_help_panel=TRAIN,
    ),
    resume: Path = typer.Option(
        None,
        "--resume",
        help="Continue the tuning job in this directory with its saved settings.",
        rich_help_panel=RUN,
    ),
    strategy: str = typer.Option(
        None,
        "--strategy",
        help="Bayesian (TPE, default), Random, Grid (categorical only) or Hyperband.",
        rich_help_panel=SEARCH,
    ),
    metric: str = typer.Option(
        None,
        "--objective-metric",
        "--objective",
        help="Metric the trainer records, e.g. valid_accuracy (default), valid_loss; for a script, the "
        "name of one of its --metric-definition regexes.",
        rich_help_panel=SEARCH,
    ),
    objective_type: str = typer.Option(
        None, "--objective-type", help="Maximize (default) or Minimize.", rich_help_panel=SEARCH
    ),
    minimize: bool = typer.Option(
        None,
        "--minimize/--maximize",
        help="Shorthand for --objective-type Minimize / Maximize.",
        show_default=False,
        rich_help_panel=SEARCH,
    ),
    early_stopping: str = typer.Option(
        None,
        "--early-stopping",
        help="Off (default) or Auto: stop trials below the median at the same epoch.",
        rich_help_panel=SEARCH,
    ),
    max_jobs: int = typer.Option(
        None, "--max-jobs", help="Trials in all (default 10).", rich_help_panel=BUDGET
    ),
    max_parallel: int = typer.Option(
        None,
        "--max-parallel",
        help="Trials at once on this machine, each in its own process.",
        rich_help_panel=BUDGET,
    ),
    trial_nproc: int = typer.Option(
        None,
        "--trial-nproc",
        help="Processes per trial: each trial is a distributed job under torchrun (DDP), one process "
        "per GPU or a share of the cores; --batch-size stays the global batch.",
        rich_help_panel=BUDGET,
    ),
    target_value: float = typer.Option(
        None, "--target-value", help="Stop once a trial reaches this objective value.", rich_help_panel=BUDGET
    ),
    not_improving: int = typer.Option(
        None,
        "--max-jobs-not-improving",
        help="Stop after this many trials in a row without a 1% improvement.",
        rich_help_panel=BUDGET,
    ),
    max_runtime: float = typer.Option(
        None, "--max-runtime", help="Stop starting trials after this many seconds.", rich_help_panel=BUDGET
    ),
    storage: str = typer.Option(
        None,
        "--storage",
        help="Study storage: default a journal file in the job directory; postgresql://user@host/db to "
        "share the study with `vizsla tune worker` on other machines.",
        rich_help_panel=RUN,
    ),
    study_name: str = typer.Option(
        None, "--study-name", help="Study name (default: job name).", rich_help_panel=RUN
    ),
    warm_start: list[Path] = typer.Option(
        None,
        "--warm-start",
        help="Parent tuning job directory to start from (repeat for up to 5).",
        rich_help_panel=SEARCH,
    ),
    warm_start_type: str = typer.Option(
        None,
        "--warm-start-type",
        help="IdenticalDataAndAlgorithm (default) or TransferLearning.",
        rich_help_panel=SEARCH,
    ),
    seed: int = typer.Option(None, "--seed", help="Seed of the sampler.", rich_help_panel=SEARCH),
    model: str = typer.Option(None, "--model", "-m", help="timm model name.", rich_help_panel=TRAIN),
    epochs: int = typer.Option(
        None, "--epochs", help="Epochs per trial (unless tuned).", rich_help_panel=TRAIN
    ),
    finetune: str = typer.Option(None, "--finetune", help="head, full or staged.", rich_help_panel=TRAIN),
    entry_point: str = typer.Option(
        None,
        "--entry-point",
        help="Tune your own SageMaker training script (e.g. hpo.py) instead of Vizsla's trainer; "
        "ranges name its arguments verbatim (batch-size, lr).",
        rich_help_panel=SCRIPT,
    ),
    source_dir: str = typer.Option(
        None, "--source-dir", help="Folder of the script and its modules.", rich_help_panel=SCRIPT
    ),
    channel: list[str] = typer.Option(
        None,
        "--channel",
        help="Input channel NAME=PATH (SM_CHANNEL_NAME); repeatable.",
        rich_help_panel=SCRIPT,
    ),
    hyperparameters: list[str] = typer.Option(
        None,
        "--hyperparameters",
        help="Static script arguments KEY=VALUE (several in one quoted value, or repeat the option); "
        "the sampled values are merged over them.",
        rich_help_panel=SCRIPT,
    ),
    metric_definition: list[str] = typer.Option(
        None,
        "--metric-definition",
        help="NAME=REGEX read from the script's output, e.g. \"average test loss=Test set: Average loss: "
        '([0-9\\.]+)"; the objective is the last value matched; repeatable.',
        rich_help_panel=SCRIPT,
    ),
    python: str = typer.Option(
        None,
        "--python",
        help="Run the script's trials with this interpreter (your own venv).",
        rich_help_panel=SCRIPT,
    ),
    debug_hook: bool = typer.Option(
        False,
        "--debug-hook",
        help="Give each trial the default smdebug hook config (SageMaker's tuning jobs give none).",
        rich_help_panel=SCRIPT,
    ),
    no_tracking: bool = typer.Option(
        False, "--no-tracking", help="Do not record in MLflow.", rich_help_panel=RUN
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.", rich_help_panel=RUN),
) -> None:
    """Run a tuning job: many training jobs, one Optuna study. Re-running the same command resumes it.

    With --entry-point the trials run your own SageMaker training script (script mode).
    """
    if ctx.invoked_subcommand is not None:
        return
    from vizsla.cli.train import _overrides
    from vizsla.spec import read_yaml
    from vizsla.tuning.default_ranges import describe, is_name_list, ranges_from_names
    from vizsla.tuning.job import TuneDir, load_saved_spec, read_saved_mapping, run_tuning
    from vizsla.tuning.tune_spec import build_tune_spec

    console = Console(stderr=True, highlight=False)
    if resume is not None:
        spec = load_saved_spec(resume)
        console.print(f"resuming tuning job [bold]{resume}[/bold]")
    else:
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
        elif TuneDir(output).is_tuning_job() and not study_name:  # continue its study, even renamed
            study_name = read_saved_mapping(output).get("study_name")
        training = read_yaml(config) if config else {}
        training.pop("output", None)
        if minimize is not None and objective_type is None:
            objective_type = "Minimize" if minimize else "Maximize"
        script = _script_overrides(
            training,
            entry_point=entry_point,
            source_dir=source_dir,
            channels=channel,
            hyperparameters=hyperparameters,
            metric_definitions=metric_definition,
            no_tracking=no_tracking,
            python=python,
            debug_hook=debug_hook,
            trainer_options={"--data": data, "--model": model, "--epochs": epochs, "--finetune": finetune},
        )
        if script is not None:
            training = {}
        values = {
            "output": str(output),
            "strategy": strategy,
            "objective.metric": metric,
            "objective.type": objective_type,
            "early_stopping": early_stopping,
            "max_jobs": max_jobs,
            "max_parallel": max_parallel,
            "trial_nproc": trial_nproc,
            "completion.target_value": target_value,
            "completion.max_jobs_not_improving": not_improving,
            "completion.max_runtime_s": max_runtime,
            "storage": storage,
            "study_name": study_name,
            "random_seed": seed,
            "warm_start.parents": [str(p) for p in warm_start] if warm_start else None,
            "warm_start.type": warm_start_type,
            "training.data.root": data,
            "training.model.name": model,
            "training.train.epochs": epochs,
            "training.train.finetune": finetune,
            "training.tracking.enabled": False if no_tracking else None,
        }
        overrides = _overrides(values)
        if training:
            overrides["training"] = _merge(training, overrides.get("training", {}))
        if script is not None:
            overrides.pop("training", None)
            overrides["script"] = script
        if not base and not space:
            raise UserError("no search space given: pass --space space.yaml")
        spec = build_tune_spec(base, overrides, source=str(space) if space else "command line")
    summary = run_tuning(spec, on_event=console.print if not quiet else None, progress=not quiet)
    _print_summary(console, summary)


def _script_overrides(
    config: dict[str, Any],
    *,
    entry_point: str | None,
    source_dir: str | None,
    channels: list[str] | None,
    hyperparameters: list[str] | None,
    metric_definitions: list[str] | None,
    no_tracking: bool,
    trainer_options: dict[str, Any],
    python: str | None = None,
    debug_hook: bool = False,
) -> dict[str, Any] | None:
    """The script section from --entry-point & co. (over a script job YAML given as --config), or None."""
    from vizsla.scriptmode.spec import is_script_spec, parse_hyperparameters, parse_metric_definition

    base = dict(config) if config and is_script_spec(config) else None
    script_flags = [channels, hyperparameters, metric_definitions, source_dir, python, debug_hook]
    if entry_point is None and base is None:
        if any(script_flags):
            raise UserError(
                "--channel, --hyperparameters, --metric-definition, --source-dir, --python and "
                "--debug-hook tune a script: pass --entry-point too"
            )
        return None
    given = [flag for flag, value in trainer_options.items() if value is not None]
    if given:
        raise UserError(
            f"{', '.join(given)} set Vizsla's own trainer; a script takes its inputs as --channel "
            "NAME=PATH and its arguments as --hyperparameters KEY=VALUE"
        )
    script: dict[str, Any] = base or {}
    script.pop("kind", None)
    if entry_point is not None:
        script["entry_point"] = entry_point
    if source_dir is not None:
        script["source_dir"] = source_dir
    for item in channels or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path:
            raise UserError(
                f"--channel wants NAME=PATH, got {item!r}", hint="e.g. --channel training=data/train"
            )
        script.setdefault("channels", {})[name.strip()] = path
    if hyperparameters:
        pairs = [pair for item in hyperparameters for pair in item.split()]
        script["hyperparameters"] = {**(script.get("hyperparameters") or {}), **parse_hyperparameters(pairs)}
    if metric_definitions:
        parsed = [parse_metric_definition(text).model_dump() for text in metric_definitions]
        names = {d["name"] for d in parsed}
        kept = [d for d in script.get("metric_definitions") or [] if _definition_name(d) not in names]
        script["metric_definitions"] = kept + parsed
    if python is not None:
        script["python"] = python
    if debug_hook:
        script["debug_hook"] = True
    if no_tracking:
        script.setdefault("tracking", {})["enabled"] = False
    return script


def _definition_name(item: Any) -> Any:
    return item.get("name", item.get("Name")) if isinstance(item, dict) else None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    from vizsla.spec import deep_merge

    return deep_merge(base, override)


@app.command("worker")
def worker(
    study: str = typer.Option(..., "--study", help="Name of the study to join."),
    storage: str = typer.Option(..., "--storage", help="The study's storage URL (postgresql://...)."),
    output: Path = typer.Option(
        None, "--output", "-o", help="Where this worker writes its trials (default runs/<study>-<host>)."
    ),
    max_parallel: int = typer.Option(1, "--max-parallel", help="Trials at once on this machine."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Join a tuning job from another machine (or process): run its trials until the shared cap is used."""
    import os

    from vizsla.tuning.job import run_worker
    from vizsla.tuning.study import load_worker_study

    console = Console(stderr=True, highlight=False)
    study_obj, spec = load_worker_study(storage, study, seed_offset=os.getpid())
    out = output or Path("runs") / f"{study}-{os.uname().nodename}"
    console.print(f"worker joined study [bold]{study}[/bold]; trials go to {out}")
    summary = run_worker(
        study_obj,
        spec,
        out,
        storage,
        max_parallel,
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
        for warning in best_trial.get("warnings") or []:
            console.print(f"  [yellow]warning:[/] {warning}", highlight=False)
    console.print(f"  tuning job directory: {summary.get('tune_dir')}")
