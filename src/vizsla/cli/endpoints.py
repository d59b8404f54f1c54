"""`vizsla endpoints`: create, list, describe, follow, update and delete managed local endpoints.

An endpoint is a named, supervised server in the background (SageMaker's CreateEndpoint): it outlives
the shell that created it, restarts a crashed model server, and updates blue/green without a failed
request. Everything shown is read from the registry ($VIZSLA_HOME/endpoints) and the router's /metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from vizsla.errors import UserError
from vizsla.infra.formatting import format_time

app = typer.Typer(no_args_is_help=True, help="Managed local endpoints: create, list, update, delete.")

STATUS_STYLE = {
    "InService": "green",
    "Creating": "cyan",
    "Updating": "cyan",
    "Failed": "red",
    "OutOfService": "yellow",
    "Deleting": "yellow",
}


def _config(
    models: list[str],
    variants: list[str],
    *,
    best: bool,
    workers: int,
    runtime: str,
    capture_percent: float,
    capture_max_mb: float,
    seed: int,
    handler: Path | None,
) -> Any:
    """The EndpointConfig of the options: one variant `AllTraffic` per --model, or the --variant list."""
    from pydantic import ValidationError

    from vizsla.base_spec import format_validation_error
    from vizsla.endpoints import EndpointConfig, resolve_model
    from vizsla.endpoints.spec import parse_variant

    if bool(models) == bool(variants):
        raise UserError("give either --model (one model) or --variant NAME=MODEL:WEIGHT (one or more)")
    parsed = [("AllTraffic", models[0], 1.0)] if models else [parse_variant(v) for v in variants]
    try:
        return EndpointConfig.model_validate(
            {
                "variants": [
                    {"name": n, "model": resolve_model(m, best=best), "weight": w} for n, m, w in parsed
                ],
                "workers": workers,
                "runtime": runtime,
                "seed": seed,
                "handler": str(handler.resolve()) if handler else None,
                "capture": {"percent": capture_percent, "max_mb": capture_max_mb},
            }
        )
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, "invalid endpoint option", one_line=True)) from None


def _progress(console: Console, name: str) -> Any:
    return lambda status: console.print(f"{name}: {status}", style=STATUS_STYLE.get(status), highlight=False)


MODEL_HELP = "Training job, model folder, or tuning job with --best (one variant, AllTraffic)."
VARIANT_HELP = "Production variant NAME=MODEL:WEIGHT, repeatable (e.g. a=runs/job-1:0.9)."


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Endpoint name (letters, digits, dashes)."),
    model: list[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    variant: list[str] = typer.Option(None, "--variant", help=VARIANT_HELP),
    best: bool = typer.Option(False, "--best", help="MODEL is a tuning job: serve its best trial."),
    port: int = typer.Option(..., "--port", "-p", help="Public port of the endpoint."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; 0.0.0.0 for other machines."),
    workers: int = typer.Option(1, "--workers", min=1, help="Server processes per variant."),
    runtime: str = typer.Option("onnx", "--runtime", help="onnx, torch or onnx-int8."),
    handler: Path = typer.Option(None, "--handler", "--entry-point", help="Inference script (model_fn...)."),
    capture_percent: float = typer.Option(0.0, "--capture-percent", help="Share of requests captured (%)."),
    capture_max_mb: float = typer.Option(16.0, "--capture-max-mb", help="Capture file size before rotation."),
    seed: int = typer.Option(0, "--seed", help="Seed of the variant picker and capture sampling."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until InService (or Failed)."),
) -> None:
    """Start a supervised endpoint in the background: Creating -> InService once /ping answers."""
    from vizsla.endpoints import create_endpoint

    config = _config(
        model or [],
        variant or [],
        best=best,
        workers=workers,
        runtime=runtime,
        seed=seed,
        capture_percent=capture_percent,
        capture_max_mb=capture_max_mb,
        handler=handler,
    )
    console = Console(stderr=True)
    record = create_endpoint(
        name, config, port=port, host=host, wait=wait, on_status=_progress(console, name)
    )
    typer.echo(f"{name} {record['status']} at {record['url']}")


@app.command("update")
def update(
    name: str = typer.Argument(..., help="Endpoint to update."),
    model: list[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    variant: list[str] = typer.Option(None, "--variant", help=VARIANT_HELP),
    best: bool = typer.Option(False, "--best", help="MODEL is a tuning job: serve its best trial."),
    workers: int = typer.Option(None, "--workers", min=1, help="Server processes per variant."),
    runtime: str = typer.Option(None, "--runtime", help="onnx, torch or onnx-int8."),
    capture_percent: float = typer.Option(None, "--capture-percent", help="Share of requests captured (%)."),
) -> None:
    """Blue/green: start the new model(s), health-check, switch traffic, drain and stop the old ones."""
    from vizsla.endpoints import read_record, update_endpoint

    current = read_record(name)["config"]
    capture = current.get("capture") or {}
    config = _config(
        model or [],
        variant or [],
        best=best,
        workers=workers or current["workers"],
        runtime=runtime or current["runtime"],
        seed=current.get("seed", 0),
        capture_percent=capture.get("percent", 0.0) if capture_percent is None else capture_percent,
        capture_max_mb=capture.get("max_mb", 16.0),
        handler=Path(current["handler"]) if current.get("handler") else None,
    )
    record = update_endpoint(name, config, on_status=_progress(Console(stderr=True), name))
    typer.echo(f"{name} {record['status']}: {', '.join(_models(record))}")


@app.command("delete")
def delete(name: str = typer.Argument(..., help="Endpoint to delete.")) -> None:
    """Drain in-flight requests, stop the endpoint's servers, free its port and unregister it."""
    from vizsla.endpoints import delete_endpoint, read_record

    url = read_record(name).get("url")
    delete_endpoint(name)
    typer.echo(f"{name} deleted ({url} is free)")


def _models(record: dict[str, Any]) -> list[str]:
    variants = (record.get("config") or {}).get("variants") or []
    if len(variants) == 1:
        return [Path(variants[0]["model"]).name]
    total = sum(v["weight"] for v in variants) or 1.0
    return [f"{v['name']}={Path(v['model']).name} {100 * v['weight'] / total:.0f}%" for v in variants]


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


@app.command("list")
def list_endpoints() -> None:
    """Endpoints with status, URL, model, creation time, invocations, errors and p99 latency."""
    from vizsla.endpoints import iter_records, registry_root
    from vizsla.endpoints.stats import read_stats

    records = list(iter_records())
    console = Console(highlight=False)
    if not records:
        console.print(f"No endpoints in {registry_root()}; start one with `vizsla endpoints create`.")
        return
    table = Table(title=f"Endpoints in {registry_root()}", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("Name", "Status", "URL", "Model", "Created", "Invocations", "Errors", "p99"):
        table.add_column(column, justify="right" if column in ("Invocations", "Errors", "p99") else "left")
    for record in records:
        stats = read_stats(record, timeout_s=1.0)
        status = str(record.get("status"))
        table.add_row(
            str(record["name"]),
            f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]",
            str(record.get("url")),
            ", ".join(_models(record)),
            format_time(record.get("created")),
            str(stats.total.invocations) if stats.reachable else "—",
            str(stats.total.errors) if stats.reachable else "—",
            _ms(stats.total.p99_ms),
        )
    console.print(table)


@app.command("describe")
def describe(name: str = typer.Argument(..., help="Endpoint to describe.")) -> None:
    """Status, failure reason, variants with weights and traffic, capture, restarts and backends."""
    from vizsla.endpoints import EndpointDir, read_record
    from vizsla.endpoints.registry import shown
    from vizsla.endpoints.stats import read_stats

    record = shown(read_record(name))
    stats = read_stats(record)
    config = record.get("config") or {}
    console = Console(highlight=False)
    rows = [
        ("Status", record.get("status")),
        ("Failure reason", record.get("failure_reason")),
        ("URL", record.get("url")),
        ("Created", format_time(record.get("created"))),
        ("Updated", format_time(record.get("updated"))),
        ("Workers per variant", config.get("workers")),
        ("Runtime", config.get("runtime")),
        ("Restarts", record.get("restarts")),
        ("Data capture", _capture_text(config.get("capture") or {}, stats)),
        ("Folder", EndpointDir.of(name).root),
    ]
    for label, value in rows:
        if value not in (None, ""):
            console.print(f"[bold]{label}:[/bold] {value}", soft_wrap=True)
    table = Table(title="Production variants", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("Variant", "Model", "Weight", "Invocations", "Errors", "p99", "Backend"):
        table.add_column(column, overflow="fold", min_width=len(column) if column != "Model" else 12)
    total = sum(v["weight"] for v in config.get("variants") or []) or 1.0
    backends = record.get("backends") or {}
    for variant in config.get("variants") or []:
        seen = stats.variants.get(variant["name"])
        backend = backends.get(variant["name"]) or {}
        table.add_row(
            variant["name"],
            variant["model"],
            f"{100 * variant['weight'] / total:.0f}%",
            str(seen.invocations if seen else 0),
            str(seen.errors if seen else 0),
            _ms(seen.p99_ms if seen else None),
            f"127.0.0.1:{backend['port']} pid {backend['pid']}" if backend else "—",
        )
    console.print(table)


def _capture_text(capture: dict[str, Any], stats: Any) -> str:
    if not capture.get("percent"):
        return "off"
    return (
        f"{capture['percent']:g}% of requests, files rotated at {capture.get('max_mb', 16):g} MB "
        f"({stats.captured} captured, {stats.capture_dropped} dropped)"
    )


@app.command("logs")
def logs(
    name: str = typer.Argument(..., help="Endpoint whose log to show."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (Ctrl+C ends)."),
    lines: int = typer.Option(100, "--lines", "-n", help="Lines from the end to start with."),
) -> None:
    """The endpoint's log: the supervisor's lines and each variant's server output."""
    from vizsla.endpoints import EndpointDir, read_record

    read_record(name)
    path = EndpointDir.of(name).log
    if not path.is_file():
        raise UserError(f"no log yet: {path}")
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle.readlines()[-lines:]:
            typer.echo(line.rstrip("\n"))
        while follow:
            line = handle.readline()
            if line:
                typer.echo(line.rstrip("\n"))
            elif not EndpointDir.of(name).exists():
                return  # deleted
            else:
                time.sleep(0.2)
