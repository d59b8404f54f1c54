"""`vizsla train --entry-point SCRIPT ...`: the script-mode branch of `vizsla train` (a user's own script).

`vizsla train` dispatches here when it gets --entry-point, a --config whose spec is a script job, or
--resume of a script job directory; everything else about the command stays in cli/train.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape

from vizsla.cli import options as o
from vizsla.cli.options import given, nest
from vizsla.errors import UserError
from vizsla.jobdir import JobDir

SCRIPT_JOB_FLAGS = (  # the flags of `vizsla train` that fill a ScriptJobSpec (all have the same field paths)
    o.NAME, o.OUTPUT, o.ENTRY_POINT, o.SOURCE_DIR, o.CHANNELS, o.HYPERPARAMETERS, o.METRIC_DEFINITIONS,
    o.INSTALL_REQUIREMENTS, o.MAX_RUN, o.TRACKING_URI, o.EXPERIMENT, o.NO_TRACKING, o.DEBUG, o.RULES,
    o.PROFILE, o.NO_DEBUG_HOOK, o.PYTHON, o.INFERENCE_ENTRY_POINT,
)  # fmt: skip


def is_script_job(entry_point: str | None, config: Path | None, resume: Path | None) -> bool:
    """True when the command runs a user's script: --entry-point, a script --config, or a script job dir."""
    from vizsla.scriptmode.spec import is_script_spec

    if entry_point:
        return True
    if resume is not None:
        return is_script_spec(_read_mapping(JobDir(resume).spec))
    if config is not None:
        from vizsla.spec import read_yaml

        return is_script_spec(read_yaml(config))
    return False


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return content if isinstance(content, dict) else {}


def check_builtin_args(extra: list[str] | None, script_values: dict[str, Any]) -> None:
    """A built-in job takes no script-mode options and no positional arguments."""
    given = [flag for flag, value in script_values.items() if value]
    if given:
        raise UserError(
            f"{', '.join(given)} only apply to a script job",
            hint="add --entry-point train_model.py to run your own script",
        )
    if extra:
        raise UserError(f"unexpected argument(s): {' '.join(extra)}")


def parse_channels(items: list[str] | None) -> dict[str, str]:
    """['training=ROOT/train', ...] -> {"training": "ROOT/train"}."""
    channels: dict[str, str] = {}
    for item in items or []:
        name, sep, location = item.partition("=")
        if not sep or not name.strip() or not location.strip():
            raise UserError(f"--channel {item!r} is not NAME=PATH", hint="e.g. --channel training=data/train")
        channels[name.strip()] = location.strip()
    return channels


def hyperparameter_items(items: list[str] | None, extra: list[str] | None) -> list[str]:
    """--hyperparameters values, plus the KEY=VALUE words after it (`--hyperparameters epochs=5 lr=0.1`)."""
    extra = list(extra or [])
    if extra and not items:
        raise UserError(
            f"unexpected argument(s): {' '.join(extra)}",
            hint="hyperparameters go after --hyperparameters: --hyperparameters epochs=5 batch-size=64",
        )
    stray = [word for word in extra if "=" not in word]
    if stray:
        raise UserError(
            f"unexpected argument(s): {' '.join(stray)}",
            hint="hyperparameters are KEY=VALUE words, e.g. --hyperparameters epochs=5 batch-size=64",
        )
    return [*(items or []), *extra]


def train_script(
    *,
    config: Path | None = None,
    resume: Path | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    extra: list[str] | None = None,
    distribution: dict[str, Any] | None = None,
    **flags: Any,
) -> None:
    """Build the ScriptJobSpec from flags and --config, run the script, print the outcome (exit 1: failed).

    FLAGS are `vizsla train`'s values by parameter name (those of SCRIPT_JOB_FLAGS fill the spec; --data is
    refused; the built-in trainer's are ignored). DISTRIBUTION (from --nproc-per-node and friends): the
    script runs under torchrun."""
    from vizsla.cli.train import _prepare_output
    from vizsla.scriptmode.runner import run_script_job
    from vizsla.scriptmode.spec import build_script_spec, load_script_job_spec
    from vizsla.spec import read_yaml

    if flags.get("data"):
        raise UserError(
            "--data and --entry-point do not go together",
            hint="a script reads its data from channels: --channel training=ROOT/train",
        )
    console = Console(stderr=True, highlight=False)
    if resume is not None:
        spec = load_script_job_spec(resume)  # the folder where it is now, wherever it was first run
        previous = _read_mapping(JobDir(resume).result)
        if previous.get("status") == "Completed":
            raise UserError(
                f"{resume} is already Completed; nothing to re-run", hint="use --overwrite instead"
            )
        console.print(
            f"re-running the script of [bold]{escape(spec.job_name)}[/bold] in {escape(str(resume))}"
        )
    else:
        flags["hyperparameters"] = hyperparameter_items(flags.get("hyperparameters"), extra)
        base = read_yaml(config) if config else {}
        merged = nest(given(SCRIPT_JOB_FLAGS, flags))
        if not (merged.get("output") or base.get("output")):
            raise UserError("no job directory given: pass --output DIR")
        if distribution is not None:
            merged["distribution"] = {k: v for k, v in distribution.items() if v is not None}
        spec = build_script_spec(base, merged, source=str(config) if config else "command line")
        _prepare_output(Path(spec.output), overwrite)
    result = run_script_job(spec, progress=not quiet, resume=resume is not None)
    print_script_summary(console, result)
    if result.get("status") == "Failed":
        raise typer.Exit(1)


def print_script_summary(console: Console, result: dict[str, Any]) -> None:
    """Status, metrics (last values), unmatched definitions, failure reason and where everything is."""
    status = result.get("status", "?")
    colour = {"Completed": "green", "Stopped": "yellow", "Failed": "red"}.get(status, "white")
    duration = result.get("duration_s") or 0.0
    console.print(
        f"[bold {colour}]{status}[/] {escape(str(result.get('job_name')))} in {duration:.0f} s "
        f"(exit code {result.get('exit_code')})"
    )
    metrics = result.get("metrics") or {}
    if metrics:
        console.print("  " + "  ".join(f"{escape(k)} {v:g}" for k, v in metrics.items()))
    for name in result.get("unmatched_metric_definitions") or []:
        console.print(f"  [yellow]metric definition {escape(name)!r} never matched the script's output[/]")
    for problem in (result.get("requirements") or {}).get("unsatisfied") or []:
        console.print(
            f"  [yellow]requirements.txt: {escape(problem['requirement'])}: {escape(problem['reason'])}[/]"
        )
    if result.get("stop_reason"):
        console.print(f"  {escape(result['stop_reason'])}")
    for warning in result.get("warnings") or []:
        console.print(f"  [yellow]warning: {escape(warning)}[/]")
    if result.get("failure_reason"):
        reason = escape(result["failure_reason"]).replace("\n", "\n  ")
        console.print(f"  [red]{reason}[/]")
    if result.get("best_model_path"):
        console.print(f"  model: {escape(result['best_model_path'])}")
    console.print(f"  job directory: {escape(str(result.get('job_dir')))}")
