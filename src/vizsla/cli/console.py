"""`vizsla console`: the local web console over a runs folder and this user's endpoints."""

from __future__ import annotations

from pathlib import Path

import typer

from vizsla.errors import UserError


def console(
    port: int = typer.Option(8800, "--port", "-p", help="Port of the console."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (the console has no login)."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="Folder holding job directories."),
) -> None:
    """A local web page listing training jobs, tuning jobs and endpoints, with their reports."""
    import uvicorn

    from vizsla.console import create_console_app
    from vizsla.endpoints.lifecycle import endpoint_url, port_free

    if not runs.is_dir():
        raise UserError(
            f"runs folder not found: {runs}", hint="Pass the folder your jobs write to with --runs."
        )
    if not port_free(host, port):
        raise UserError(f"port {port} on {host} is in use: pick another --port")
    typer.echo(f"console for {runs.resolve()} at {endpoint_url(host, port)}/ (Ctrl+C stops it)")
    uvicorn.run(create_console_app(runs), host=host, port=port, log_level="warning", access_log=False)
