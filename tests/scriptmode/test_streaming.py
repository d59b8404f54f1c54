"""The script's output streams: a line that cannot be recorded never stops the pipe being drained."""

from __future__ import annotations

import os
from pathlib import Path

from vizsla.scriptmode.metrics import MetricMatcher
from vizsla.scriptmode.streaming import OutputStreams


class _BrokenOnBoom(MetricMatcher):
    def match(self, line: str) -> list:
        if "boom" in line:
            raise RuntimeError("a metric definition that fails on this line")
        return super().match(line)


def test_a_failing_line_does_not_stop_the_reader_so_the_script_never_blocks_on_a_full_pipe(tmp_path: Path):
    streams = OutputStreams(tmp_path / "train.log", tmp_path / "metrics.jsonl", _BrokenOnBoom([]),
                            progress=False, append_log=False)
    read_out, write_out = os.pipe()
    read_err, write_err = os.pipe()
    streams.start(os.fdopen(read_out, "rb"), os.fdopen(read_err, "rb"))
    with os.fdopen(write_out, "wb") as out:
        out.write(b"boom\n")
        out.write(b"x" * 100 + b"\n")  # then far more than a pipe holds (64 KiB): written only if drained
        out.write((b"y" * 99 + b"\n") * 2000)
        out.write(b"last line\n")
    os.close(write_err)
    streams.join(os.getpid() + 10_000_000)  # no such process group: nothing to kill
    assert not any(thread.is_alive() for thread in streams._threads)
    streams.close()
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert lines[0] == "boom" and lines[-1] == "last line" and len(lines) == 2003
