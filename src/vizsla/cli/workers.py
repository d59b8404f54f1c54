"""`vizsla workers`: the resident workers that `vizsla train` starts (vizsla.resident): list and stop them."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_workers() -> None:
    """The live resident workers of this user: pid, memory, socket and log."""
    import psutil

    from vizsla.resident import control, identity

    console = Console(highlight=False)
    found = control.workers()
    if not found:
        console.print(f"no resident worker runs ({identity.SWITCH}=0 keeps `vizsla train` from starting one)")
        return
    table = Table("pid", "memory (MiB)", "socket", "log", caption=f"in {found[0].socket.parent}")
    for worker in found:
        try:
            memory = f"{psutil.Process(worker.pid).memory_info().rss / 2**20:.0f}"
        except psutil.Error:
            memory = "?"
        table.add_row(str(worker.pid), memory, worker.socket.name, worker.log.name)
    console.print(table)


@app.command("stop")
def stop_workers() -> None:
    """Stop every resident worker of this user (jobs already running in them go on to their end)."""
    from vizsla.resident import control

    stopped = control.stop()
    pids = f": {', '.join(map(str, stopped))}" if stopped else ""
    typer.echo(f"stopped {len(stopped)} resident worker(s){pids}")
