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


def installed_version() -> str:
    """vizsla's version as installed (its package metadata), else the source tree's."""
    import importlib.metadata

    try:
        return importlib.metadata.version("vizsla")
    except importlib.metadata.PackageNotFoundError:
        from vizsla import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vizsla {installed_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Options of `vizsla` itself, before any command."""


def _mount() -> None:
    from vizsla.cli import (
        console,
        datasets,
        debug,
        endpoints,
        jobs,
        models,
        profile,
        serve,
        train,
        transform,
        tune,
        workers,
    )

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
    app.command("transform", help=transform.transform.__doc__)(transform.transform)
    app.add_typer(jobs.app, name="jobs", help="List and describe training jobs, like SageMaker's console.")
    app.add_typer(endpoints.app, name="endpoints", help="Managed local endpoints: create, list, update.")
    app.command("console", help=console.console.__doc__)(console.console)
    app.add_typer(
        models.app, name="models", help="Model names you can train; MLflow's registry (register, alias)."
    )
    app.add_typer(
        workers.app, name="workers",
        help="The resident workers that keep `vizsla train`'s imports loaded: list and stop them.",
    )


_mount()


# Commands whose process ends as soon as their work is done and written: tearing down the interpreter after
# torch, timm, onnxruntime, MLflow/SQLAlchemy and matplotlib are loaded takes 1.5-2 s here (measured: the
# same imports then exit), a wait users saw after every job's summary. Everything these commands write is
# written synchronously and closed before they return; serve, which owns temporary folders, exits normally.
FAST_EXIT_COMMANDS = {"train", "tune"}


def flush_outputs() -> None:
    """Flush what the process logged and printed: before leaving without interpreter teardown (here, and
    in a resident worker's child, which then tells its client the exit code)."""
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _exit_now(code: int) -> None:
    """Flush what the process printed and logged, then leave without interpreter teardown."""
    import os

    flush_outputs()
    os._exit(code)


def run(argv: list[str]) -> int:
    """Run the command ARGV (without the program name) and return its exit code: click's usage errors are
    2, a UserError prints one clear message and is its exit code. Also what a resident worker's child runs."""
    try:
        app(args=argv)
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except UserError as exc:
        console = Console(stderr=True, highlight=False)
        console.print("[bold red]error:[/bold red] ", end="")
        # soft_wrap: long paths stay whole (rich would fold them, or cut them with an ellipsis)
        console.print(exc.message, markup=False, soft_wrap=True)
        if exc.hint:
            console.print(exc.hint, markup=False, soft_wrap=True)
        return exc.exit_code
    return 0


def finish(argv: list[str], code: int) -> None:
    """Leave with CODE: without interpreter teardown after a fast-exit command that succeeded."""
    if code == 0 and argv and argv[0] in FAST_EXIT_COMMANDS:
        _exit_now(0)
    sys.exit(code)


def main() -> None:
    """Entry point (the `vizsla` command's is vizsla.cli.entry.main, which this runs)."""
    from vizsla.cli import entry

    entry.main()
