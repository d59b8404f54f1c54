"""The `vizsla` command's entry point: hand the command to a resident worker before importing the CLI.

Importing the Typer app mounts every command group (~0.25 s); a command that a resident worker runs
(vizsla.resident) needs none of it here, so this module imports only the resident client until it knows."""

from __future__ import annotations

import sys


def main() -> None:
    """A command a resident worker may run goes to the one that matches this process (it has the heavy
    imports loaded), started first when none runs; otherwise, or when no worker can take it, the command
    runs here."""
    from vizsla.resident import client, identity

    argv = sys.argv[1:]
    if identity.eligible(argv):
        code = client.run_in_worker(argv)
        if code is not None:
            sys.exit(code)
    from vizsla.cli import app

    app.finish(argv, app.run(argv))
