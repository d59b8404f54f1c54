"""A source dir's requirements.txt: checked against the installed packages, installed only when asked.

SageMaker's toolkit always runs `pip install -r requirements.txt` in the container. On a user's own machine
that would change their environment behind their back, so Vizsla checks by default (importlib.metadata +
packaging specifiers and markers) and installs only with --install-requirements.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

REQUIREMENTS_FILE = "requirements.txt"


def requirements_file(source_dir: Path) -> Path | None:
    path = Path(source_dir) / REQUIREMENTS_FILE
    return path if path.is_file() else None


def _logical_lines(text: str) -> list[str]:
    """Lines with comments removed and backslash continuations joined (pip's requirement file syntax)."""
    lines, pending = [], ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            lines.append(line)
    if pending.strip():
        lines.append(pending.strip())
    return lines


def check_requirement(line: str) -> dict[str, Any] | None:
    """None when satisfied (or its marker excludes this machine), else what is wrong with it."""
    try:
        requirement = Requirement(line.split(" --", 1)[0].strip())  # per-line pip options (--hash) dropped
    except InvalidRequirement as exc:
        return {"requirement": line, "name": None, "installed": None, "reason": f"not checked: {exc}"}
    if requirement.marker is not None and not requirement.marker.evaluate():
        return None
    try:
        installed = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        installed = None
    entry = {
        "requirement": line,
        "name": requirement.name,
        "specifier": str(requirement.specifier),
        "installed": installed,
    }
    if installed is None:
        return {**entry, "reason": "not installed"}
    if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
        return {**entry, "reason": f"installed {installed} does not satisfy {requirement.specifier}"}
    return None


def check_requirements(path: Path) -> dict[str, Any]:
    """{"file", "checked", "unsatisfied": [...], "skipped": [lines pip understands but we cannot check]}."""
    unsatisfied, skipped, checked = [], [], 0
    for line in _logical_lines(Path(path).read_text(encoding="utf-8", errors="replace")):
        if line.startswith("-") or "://" in line or line.startswith((".", "/")):
            skipped.append(line)  # -r other.txt, -e ., --index-url, URLs and local paths
            continue
        checked += 1
        problem = check_requirement(line)
        if problem is not None:
            unsatisfied.append(problem)
    return {
        "file": str(path),
        "checked": checked,
        "unsatisfied": unsatisfied,
        "skipped": skipped,
        "installed": False,
    }


def install_command(path: Path, python: str | None = None) -> list[str]:
    """pip of the interpreter that runs the script (SageMaker: the container's python -m pip)."""
    return [python or sys.executable, "-m", "pip", "install", "-r", str(path)]


def install_requirements(
    path: Path, cwd: Path, on_line: Callable[[str], None], python: str | None = None
) -> tuple[int, str]:
    """Run pip like the toolkit does; each output line goes to `on_line`. Returns (exit code, stderr text)."""
    process = subprocess.Popen(
        install_command(path, python),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    lines: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip("\n")
        lines.append(line)
        on_line(line)
    return process.wait(), "\n".join(lines[-40:])
