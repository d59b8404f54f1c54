"""`vizsla debug DIR`: what the debugger rules found; re-run them on stored tensors; TensorBoard export."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from vizsla.errors import UserError
from vizsla.jobdir import JobDir

STATUS_STYLE = {
    "NoIssuesFound": "green",
    "IssuesFound": "bold red",
    "Error": "yellow",
    "InProgress": "cyan",
    "NoData": "magenta",  # not evaluated: none of the rule's tensors was saved (its note says why)
}


def debug(
    job_dir: Path = typer.Argument(..., help="Job directory (or its debug/ folder) of a run with --debug."),
    rerun: bool = typer.Option(
        False, "--rerun", help="Evaluate the rules again on the stored tensors (the job's rules, or --rules)."
    ),
    rules: str = typer.Option(
        None, "--rules", help="With --rerun: these rules instead, e.g. Overfit,DeadRelu."
    ),
    tensorboard: bool = typer.Option(
        False,
        "--tensorboard",
        help="Export the stored tensors to DIR/debug/tensorboard (tensorboard --logdir).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the rule results as JSON."),
) -> None:
    """Show what the training debugger's rules found in a job; re-run them or export to TensorBoard."""
    from vizsla.debugger import open_trial

    trial = open_trial(job_dir)
    if not trial.root.is_dir():
        raise UserError(f"{job_dir} has no debugger store ({trial.root} is missing): train it with --debug")
    console = Console()
    if tensorboard:
        from vizsla.debugger.tensorboard import export_tensorboard

        out = export_tensorboard(trial)
        Console(stderr=True).print(f"TensorBoard files in {out}  (tensorboard --logdir {out})")
    if rerun:
        results = _rerun(trial, job_dir, rules)
    else:
        path = trial.root / "rules.json"
        if not path.is_file():
            if tensorboard:
                return
            raise UserError(f"no rule results in {path}: the job ran without rules; try --rerun")
        try:
            results = json.loads(path.read_text())
        except ValueError as exc:
            raise UserError(f"{path} is not valid JSON ({exc})") from None
    if as_json:
        console.print_json(data=results)
    else:
        console.print(rules_table(results, title=f"Debugger rules: {job_dir}"))


def _rerun(trial: Any, job_dir: Path, rules: str | None) -> dict[str, Any]:
    try:
        runner = importlib.import_module("vizsla.debugger.runner")
    except ModuleNotFoundError:
        raise UserError("re-running rules needs vizsla.debugger.runner, which this install lacks") from None
    rule_specs = _rule_specs(job_dir, trial, rules)
    spec_path = JobDir(trial.root.parent).spec
    job_spec = None
    if spec_path.is_file():
        from vizsla.spec import load_spec

        job_spec = load_spec(spec_path)
    return runner.evaluate_offline(trial, rule_specs, job_spec=job_spec)


def _rule_specs(job_dir: Path, trial: Any, rules: str | None) -> list[Any]:
    """RuleSpecs to evaluate: --rules, else the job's saved ones (spec.yaml) plus the defaults it used."""
    from vizsla.spec import DebugSpec, RuleSpec, read_yaml

    if rules:
        names = [name.strip() for name in rules.split(",") if name.strip()]
        if not names:
            raise UserError("--rules needs rule names, e.g. --rules VanishingGradient,Overfit")
        return [RuleSpec(name=name) for name in names]
    spec_path = JobDir(trial.root.parent).spec
    saved = (read_yaml(spec_path).get("debug") or {}) if spec_path.is_file() else {}
    debug_spec = DebugSpec.model_validate(saved)
    specs = list(debug_spec.rules)
    if debug_spec.default_rules and specs:
        from vizsla.debugger.rules import DEFAULT_RULES, get_rule_class

        configured = {spec.name for spec in specs}
        offline = [n for n in DEFAULT_RULES if not getattr(get_rule_class(n), "live_only", False)]
        specs = [RuleSpec(name=name) for name in offline if name not in configured] + specs
    return specs  # empty: the runner's default set (less the rules that need a live job)


def rules_table(results: dict[str, Any], title: str = "Debugger rules") -> Table:
    """A rich table of rules.json: rule, status, steps evaluated, findings (first ones spelled out)."""
    table = Table(title=title, show_lines=False)
    table.add_column("Rule", style="bold", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Steps", justify="right")
    table.add_column("Findings", justify="right")
    table.add_column("First finding / error", overflow="fold")
    for rule in results.get("rules", []):
        status = str(rule.get("status", "?"))
        findings = rule.get("findings") or []
        evaluated = rule.get("steps_evaluated") or {}
        steps = (
            ", ".join(f"{mode} {n}" for mode, n in evaluated.items()) if isinstance(evaluated, dict) else ""
        )
        first = rule.get("error") or (findings[0].get("message", "") if findings else "")
        if not first and status in ("NoData", "Skipped"):
            first = str(rule.get("note") or "")
        table.add_row(
            str(rule.get("name", "?")),
            f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]",
            steps,
            str(len(findings)),
            str(first),
        )
    return table
