"""`vizsla profile DIR`: rebuild a job's profiler summary and HTML report from its profile/ folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from vizsla.errors import UserError


def _parse_overrides(values: list[str]) -> dict[str, dict[str, Any]]:
    """'Rule.param=value' strings -> {Rule: {param: value}}."""
    overrides: dict[str, dict[str, Any]] = {}
    for text in values:
        key, sep, raw = text.partition("=")
        rule, dot, param = key.partition(".")
        if not sep or not dot or not rule or not param:
            raise UserError(f"--set {text!r}: expected Rule.parameter=value, e.g. StepOutlier.stddev=5")
        try:
            value: Any = float(raw)
        except ValueError:
            raise UserError(f"--set {text!r}: {raw!r} is not a number") from None
        overrides.setdefault(rule, {})[param] = int(value) if value.is_integer() else value
    return overrides


def _job_profile_spec(job_dir: Path, overrides: dict[str, dict[str, Any]]) -> Any:
    """The job's own profile settings from spec.yaml (when it has them), with --set overrides on top."""
    from pydantic import ValidationError

    from vizsla.base_spec import deep_merge, format_validation_error, read_yaml
    from vizsla.jobdir import JobDir
    from vizsla.profiler.spec import ProfileSpec

    saved = {}
    spec_file = JobDir(job_dir).spec
    if spec_file.is_file():
        saved = read_yaml(spec_file).get("profile") or {}
    merged = deep_merge(saved, {"rules": overrides}) if overrides else saved
    try:
        return ProfileSpec.model_validate({**merged, "enabled": True})
    except ValidationError as exc:
        message = format_validation_error(exc, f"invalid profile settings for {job_dir}", one_line=True)
        raise UserError(message) from None


def profile(
    job_dir: Path = typer.Argument(..., help="Job directory of a job trained with --profile."),
    set_: list[str] = typer.Option(
        [], "--set", help="Rule parameter override, e.g. --set StepOutlier.stddev=5 (repeatable)."
    ),
    open_report: bool = typer.Option(False, "--open", help="Open the report in a browser afterwards."),
) -> None:
    """Rebuild a job's profiler report (reports/profiler-report.html) and profile/summary.json."""
    from vizsla.jobdir import JobDir
    from vizsla.profiler import build_profile_report, report_path
    from vizsla.profiler.data import STEPS_FILE, SYSTEM_FILE

    job = JobDir(job_dir)
    if not any((job.profile / name).is_file() for name in (SYSTEM_FILE, STEPS_FILE)):
        raise UserError(
            f"{job.profile} holds no profiling data",
            hint="train the job with `vizsla train --profile ...` (profile.enabled: true) first",
        )
    spec = _job_profile_spec(job.root, _parse_overrides(set_))
    summary = build_profile_report(job, spec)
    console = Console(stderr=True)
    for finding in summary["rules"]:
        colour = {"Triggered": "red", "NoIssues": "green"}.get(finding["verdict"], "white")
        console.print(f"[{colour}]{finding['verdict']:>16}[/] {finding['rule']}: {finding['message']}")
        if finding["recommendation"]:
            console.print(f"{'':>17} -> {finding['recommendation']}")
    path = report_path(job)
    console.print(f"report: {path}")
    if open_report:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
