"""kill -9 halfway through `vizsla transform`, then the same command: byte-identical to a whole run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from vizsla.testing.cli import invoke_cli

BATCH = 4
HALF = 12  # the input at this position is a FIFO: reading it blocks the run right after 12 of 24 inputs


def _command(job: Path, data: Path, out: Path) -> list[str]:
    return ["transform", str(job), "--data", str(data), "--output", str(out), "--batch-size", str(BATCH),
            "--top-k", "2", "--quiet"]


def _done(checkpoint: Path) -> int:
    try:
        return int(json.loads(checkpoint.read_text())["done"])
    except (OSError, ValueError, KeyError):
        return -1


def test_kill_9_at_half_then_the_same_command_gives_byte_identical_outputs(head_job, photos, tmp_path, tree):
    data = Path(shutil.copytree(photos, tmp_path / "data"))
    keys = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
    blocker = data / keys[HALF]  # replaced by a FIFO: the run reads it and waits, with half committed
    real = blocker.read_bytes()
    blocker.unlink()
    os.mkfifo(blocker)
    out = tmp_path / "out"
    checkpoint = out / ".vizsla-transform" / "checkpoint.json"
    process = subprocess.Popen([sys.executable, "-m", "vizsla", *_command(head_job, data, out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _done(checkpoint) < HALF and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _done(checkpoint) == HALF, process.stderr.read().decode() if process.poll() is not None else ""
        time.sleep(0.3)
        assert process.poll() is None and _done(checkpoint) == HALF  # stuck on the FIFO, not finished
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    blocker.unlink()
    blocker.write_bytes(real)
    # a kill in the middle of a write leaves a torn line and an uncounted one: both must go
    with open(out / "predictions.jsonl", "a") as handle:
        handle.write('{"path": "dog/dog_000.jpg", "label": "dog"}\n{"path": "fox/fo')
    with open(out / "rejected.csv", "a") as handle:
        handle.write("fox/fox_001.png,half a rea")

    code, output = invoke_cli(*_command(head_job, data, out))

    assert code == 0, output
    reference = tmp_path / "reference"
    assert invoke_cli(*_command(head_job, data, reference))[0] == 0
    assert tree(out) == tree(reference)
    rows = (out / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(row)["path"] for row in rows] == keys  # none lost, none doubled
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_at"] == HALF and summary["transformed_now"] == len(keys) - HALF
