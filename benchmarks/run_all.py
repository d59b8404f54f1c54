"""Run every benchmark in its own process, stream its output, write docs/benchmarks.md from what it prints.

    python benchmarks/run_all.py [--quick] [--only bench_head,bench_tuning] [--output docs/benchmarks.md]

Each script runs in a fresh Python process (`python benchmarks/<name>.py`), one after the other, so no
benchmark inherits another's warm caches or threads. A script that does not exist yet is skipped with a note.
--quick passes --quick to the scripts that accept it (a smoke run with tiny epoch/trial counts; its figures
are not the benchmark's) and writes runs/benchmarks-quick.md (git-ignored) unless --output is given.
The file is rewritten after each script; with --only, the sections of the scripts not run are kept.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from common import REPO_ROOT, machine_lines

SCRIPTS = (
    "bench_workflow",
    "bench_extract",
    "bench_views",
    "bench_head",
    "bench_tuning",
    "bench_finetune",
    "bench_data",
    "bench_hpo",
    "bench_serving",
    "bench_int8",
    "bench_transform",
    "bench_soak",
    "bench_debugger",
    "bench_profiler",
    "bench_distributed",
)
BENCH_DIR = Path(__file__).resolve().parent


@dataclass
class ScriptRun:
    """One benchmark process: its command, exit status, duration, machine load and printed output."""

    name: str
    command: list[str] = field(default_factory=list)
    returncode: int | None = None
    seconds: float = 0.0
    load_before: str = ""
    load_after: str = ""
    started: str = ""
    output: list[str] = field(default_factory=list)
    note: str = ""


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _accepts_quick(script: Path) -> bool:
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                               cwd=REPO_ROOT, check=False).stdout
    return "--quick" in help_text


def run_script(name: str, quick: bool) -> ScriptRun:
    """Run benchmarks/NAME.py, echoing its output line by line as it comes."""
    run = ScriptRun(name)
    script = BENCH_DIR / f"{name}.py"
    if not script.is_file():
        run.note = f"skipped: {script.relative_to(REPO_ROOT)} does not exist yet"
        print(f"\n### {name}: {run.note}", flush=True)
        return run
    run.command = [sys.executable, str(script.relative_to(REPO_ROOT))]
    if quick and _accepts_quick(script):
        run.command.append("--quick")
    print(f"\n### {name}: {' '.join(run.command)}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
    run.load_before = _loadavg()
    run.started = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    with subprocess.Popen(run.command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            run.output.append(line.rstrip("\n"))
        run.returncode = proc.wait()
    run.seconds = time.perf_counter() - started
    run.load_after = _loadavg()
    return run


def _git_commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO_ROOT, check=False)
    return result.stdout.strip() or "unknown"


def _section(run: ScriptRun, python: str) -> str:
    """One script's section body: when, what ran, how long, the load, and everything it printed."""
    if run.note:
        return f"\n{run.note}\n"
    lines = [
        "",
        f"- run: {run.started} (UTC), commit {_git_commit()}",
        f"- command: `{' '.join([python, *run.command[1:]])}`",
        f"- exit status: {run.returncode}; {run.seconds:.0f} s; load average (1/5/15 min) before "
        f"{run.load_before}, after {run.load_after}",
        "",
        "```text",
        *run.output,
        "```",
        "",
    ]
    return "\n".join(lines)


def previous_sections(path: Path) -> dict[str, str]:
    """The per-script sections of an existing benchmarks file, so a partial run keeps the others."""
    if not path.is_file():
        return {}
    sections = {}
    for part in re.split(r"^## ", path.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]:
        name, _, body = part.partition("\n")
        if name.strip() in SCRIPTS:
            sections[name.strip()] = body.rstrip("\n") + "\n"
    return sections


def render(sections: dict[str, str], quick: bool, started: datetime) -> str:
    """The benchmarks file: date, machine, target verdicts, then each script's section in a fixed order."""
    python = Path(sys.executable).name
    targets = [f"- `{name}`: {line.strip()}" for name in SCRIPTS if name in sections
               for line in sections[name].splitlines() if line.startswith("target ")]
    lines = [
        "# Benchmarks" + (" (quick smoke run: tiny epoch counts, not real figures)" if quick else ""),
        "",
        "Written by `make bench` (`python benchmarks/run_all.py`) from what each script printed; nothing "
        "here is typed in by hand. Every timing is a ratio against a baseline (the PyTorch transfer-learning "
        "tutorial's loop, `benchmarks/baseline.py`) measured in the same script, minutes apart, on the same "
        "machine. See `benchmarks/README.md` for what each script compares. Each section says when it ran; "
        "`run_all.py --only NAME` rewrites that section and keeps the others.",
        "",
        f"- written: {started.isoformat(timespec='seconds')} (UTC), commit {_git_commit()}",
        f"- command: `{python} benchmarks/run_all.py{' --quick' if quick else ''}`",
        "",
        "## Machine",
        "",
        *[f"- {line}" for line in machine_lines()],
        "",
        "## Targets",
        "",
        *(targets or ["- (no target lines printed)"]),
        "",
    ]
    for name in SCRIPTS:
        if name in sections:
            lines += [f"## {name}", sections[name]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run with tiny epoch/trial counts")
    parser.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated script names")
    parser.add_argument("--output", default=None, help="markdown file to write (default docs/benchmarks.md)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SCRIPTS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(SCRIPTS)}")
    started = datetime.now(UTC)
    output = REPO_ROOT / (args.output or ("runs/benchmarks-quick.md" if args.quick else "docs/benchmarks.md"))
    output.parent.mkdir(parents=True, exist_ok=True)
    sections = previous_sections(output)
    python = Path(sys.executable).name
    runs = []
    for name in names:
        runs.append(run_script(name, args.quick))
        sections[name] = _section(runs[-1], python)
        output.write_text(render(sections, args.quick, started), encoding="utf-8")  # after each script
    print(f"\nwrote {output.relative_to(REPO_ROOT) if output.is_relative_to(REPO_ROOT) else output}")
    return 0 if all(run.returncode in (None, 0) for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
