"""`vizsla serve` as a user starts it: it says what it does while loading and prints its URL only once the
URL answers; the slow-client bounds are options that reach the server's settings."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

pytestmark = [pytest.mark.slow, pytest.mark.integration]

START_S = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_url_is_printed_once_the_server_answers(serving_job: Path):
    port = _free_port()
    command = [sys.executable, "-m", "vizsla", "serve", str(serving_job), "--port", str(port)]
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + START_S
        while not any("answers on" in line for line in seen):
            assert proc.poll() is None, "".join(seen)
            try:
                seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"no 'answers on' line within {START_S:.0f} s:\n{''.join(seen)}")
        # the moment the URL is printed, it answers: no retry, no sleep
        assert httpx.get(f"http://127.0.0.1:{port}/ping", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    text = "".join(seen)
    url = f"http://127.0.0.1:{port}"
    ready = next(i for i, line in enumerate(seen) if "answers on" in line)
    assert url in seen[ready], seen[ready]
    # uvicorn's own "Uvicorn running on" line comes as it listens, too
    early = [line for line in seen[:ready] if url in line and "Uvicorn running on" not in line]
    assert not early, f"the URL was printed before it answered:\n{text}"
    assert "loading the model" in "".join(seen[:ready]), text  # what it does meanwhile
    assert "warming up" in "".join(seen[:ready]), text


def test_slow_client_bounds_are_serve_options(monkeypatch, tmp_path):
    from vizsla.cli.serve import serve
    from vizsla.serving import server

    captured = {}
    monkeypatch.setattr(server, "run_server", lambda settings, **kw: captured.update(settings=settings))
    app = typer.Typer()
    app.command()(serve)
    result = CliRunner().invoke(
        app,
        [
            str(tmp_path),
            "--header-timeout",
            "3",
            "--body-timeout",
            "20",
            "--body-idle-timeout",
            "4",
            "--body-min-rate",
            "32",
            "--max-connections",
            "100",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    limits = captured["settings"].connection_limits
    assert (limits.header_timeout_s, limits.body_timeout_s, limits.body_idle_timeout_s) == (3, 20, 4)
    assert limits.body_min_bytes_per_s == 32 * 1024 and limits.max_connections == 100
    assert limits.body_bound_s(6 * 1024 * 1024) == 20 + 6 * 1024 / 32  # 6 MiB at 32 KiB/s: 192 s more
