"""`vizsla models`: find model names to train; register trained ones in MLflow's Model Registry."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_command(
    pattern: str = typer.Argument(None, help="Wildcard filter, e.g. 'resnet*' or '*efficientnet*'."),
    pretrained: bool = typer.Option(
        False, "--pretrained", help="Only models with pretrained weights on the hub."
    ),
) -> None:
    """List timm model names (any of them works with `vizsla train --model`)."""
    from vizsla.models import list_models

    names = list_models(pattern, pretrained_only=pretrained)
    console = Console()
    for model_name in names:
        console.print(model_name, highlight=False)
    Console(stderr=True).print(f"{len(names)} models")


TRACKING_URI_HELP = "MLflow store (default $MLFLOW_TRACKING_URI, else ./runs/mlflow.db)."


@app.command("register")
def register_command(
    job: Path = typer.Argument(..., help="A finished training job's folder (a tuning trial's too)."),
    name: str = typer.Argument(..., help="Registered model name; created when missing."),
    alias: str = typer.Option(None, "--alias", help="Point this alias (e.g. champion) at the new version."),
) -> None:
    """Register a job's MLflow model as a new version of NAME (in the job's own MLflow store)."""
    from vizsla.tracking.registry import register_job

    version, model_id = register_job(job, name, alias)
    aliased = f", alias {alias}" if alias else ""
    Console().print(f"registered {name} version {version}{aliased} (model {model_id})", highlight=False)
    Console(stderr=True).print(f"serve it: vizsla serve models:/{name}/{version}", highlight=False)


@app.command("alias")
def alias_command(
    name: str = typer.Argument(..., help="Registered model name."),
    version: str = typer.Argument(..., help="Its version number."),
    alias: str = typer.Argument(..., help="Alias to point at that version, e.g. champion."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
) -> None:
    """Point ALIAS of registered model NAME at VERSION (`vizsla serve models:/NAME@ALIAS` serves it)."""
    from vizsla.tracking.registry import registry_client, set_alias

    set_alias(registry_client(tracking_uri), name, version, alias)
    Console().print(f"{name}@{alias} -> version {version}", highlight=False)


@app.command("versions")
def versions_command(
    name: str = typer.Argument(..., help="Registered model name."),
    tracking_uri: str = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
) -> None:
    """List the versions of registered model NAME with their aliases and runs."""
    from vizsla.tracking.registry import list_versions, registry_client

    console = Console()
    for row in list_versions(registry_client(tracking_uri), name):
        aliases = f"  @{', @'.join(row['aliases'])}" if row["aliases"] else ""
        line = f"{row['version']}  run {row['run_id']}  model {row['model_id']}{aliases}"
        console.print(line, highlight=False)
