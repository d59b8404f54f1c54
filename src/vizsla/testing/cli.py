"""Test helpers: run `vizsla` commands in the test's own process and collect log records."""

from __future__ import annotations

import logging


def invoke_cli(*args: str) -> tuple[int, str]:
    """`vizsla ARGS` in this process (faster than a subprocess): the exit code the command line gives and
    its output, or a user error's message; any other exception is raised (a bug keeps its traceback)."""
    from typer.testing import CliRunner

    from vizsla.cli.app import app
    from vizsla.errors import UserError

    result = CliRunner().invoke(app, list(args))
    if isinstance(result.exception, UserError):
        return result.exception.exit_code, str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


class RecordingHandler(logging.Handler):
    """Keeps every record it is given: for loggers that do not propagate to pytest's caplog."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
