"""The `vizsla` Typer app: mounts one sub-app per command group and turns user errors into exit code 2."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from vizsla.errors import UserError

app = typer.Typer(
    name="vizsla",
    help="Local-first workbench for image classifiers: train, tune, debug, profile and serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _mount() -> None:
    from vizsla.cli import datasets, debug, jobs, models, profile, serve, train, tune

    app.command("train", help=train.train.__doc__)(train.train)
    app.add_typer(
        datasets.app, name="datasets", help="Create built-in datasets (digits for the quick start)."
    )
    app.add_typer(tune.app, name="tune", help=tune.tune.__doc__)
    app.command("debug", help=debug.debug.__doc__)(debug.debug)
    app.command("profile", help=profile.profile.__doc__)(profile.profile)
    app.command("serve", help=serve.serve.__doc__)(serve.serve)
    app.command("export", help=serve.export.__doc__)(serve.export)
    app.command("predict", help=serve.predict.__doc__)(serve.predict)
    app.add_typer(jobs.app, name="jobs", help="List and describe training jobs, like SageMaker's console.")
    app.add_typer(models.app, name="models", help="List the model names you can train.")


_mount()


def main() -> None:
    """Entry point: click handles usage errors (exit 2); a UserError prints one clear message and exits 2."""
    try:
        app()
    except UserError as exc:
        console = Console(stderr=True, highlight=False)
        console.print("[bold red]error:[/bold red] ", end="")
        console.print(exc.message, markup=False)
        if exc.hint:
            console.print(exc.hint, markup=False)
        sys.exit(exc.exit_code)
