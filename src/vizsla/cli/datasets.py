"""`vizsla datasets`: create the built-in example datasets (no download) and list them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from vizsla.errors import DataError

app = typer.Typer(help="Create the built-in example datasets as image folders.", no_args_is_help=True)


@dataclass(frozen=True)
class BuiltinDataset:
    """A dataset `vizsla datasets create NAME` can write without a download."""

    name: str
    description: str
    create: Callable[..., dict[str, dict[str, int]]]


def _create_digits(out_dir: Path, *, size: int, seed: int, overwrite: bool) -> dict[str, dict[str, int]]:
    from vizsla.data.digits import create_digits  # numpy, PIL, sklearn: only when used

    return create_digits(out_dir, size=size, seed=seed, overwrite=overwrite)


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    "digits": BuiltinDataset(
        "digits",
        "1797 real 8x8 handwritten digits bundled with scikit-learn; 10 classes, 70/15/15 split",
        _create_digits,
    ),
}


def list_datasets() -> list[str]:
    """Names of the built-in datasets, for the CLI listing and parametrized tests."""
    return sorted(BUILTIN_DATASETS)


@app.command("create")
def create(
    name: str = typer.Argument(..., metavar="NAME", help="Dataset name; see `vizsla datasets list`."),
    directory: Path = typer.Argument(..., metavar="DIR", help="Output folder (created; must be empty)."),
    size: int = typer.Option(32, "--size", min=8, max=1024, help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Seed of the stratified train/valid/test split."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the split folders in DIR."),
) -> None:
    """Write a built-in dataset as DIR/{train,valid,test}/<class>/*.png."""
    dataset = BUILTIN_DATASETS.get(name)
    if dataset is None:
        raise DataError(f"unknown dataset {name!r}", hint=f"known datasets: {', '.join(list_datasets())}")
    counts = dataset.create(directory, size=size, seed=seed, overwrite=overwrite)
    Console().print(_summary(dataset.name, directory, counts))


@app.command("list")
def list_command() -> None:
    """List the built-in datasets, one line each."""
    width = max(map(len, list_datasets()))
    for name in list_datasets():
        typer.echo(f"{name:<{width}}  {BUILTIN_DATASETS[name].description}")  # plain: one line, no wrap


def _summary(name: str, directory: Path, counts: dict[str, dict[str, int]]) -> Table:
    table = Table(title=f"{name} in {directory}")
    table.add_column("split")
    table.add_column("images", justify="right")
    table.add_column("classes", justify="right")
    for split, per_class in counts.items():
        table.add_row(split, str(sum(per_class.values())), str(sum(1 for n in per_class.values() if n)))
    total = sum(sum(per_class.values()) for per_class in counts.values())
    table.add_section()
    table.add_row("total", str(total), "")
    return table
