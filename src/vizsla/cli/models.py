"""`vizsla models`: find model names to train."""

from __future__ import annotations

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
