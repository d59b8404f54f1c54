"""The interpreter that runs a script: Vizsla's own, or the user's (--python / `python:`, e.g. a venv with
NumPy 1 for scripts written for the 1.x containers), checked before the job starts."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from vizsla.errors import UserError


def same_interpreter(python: str) -> bool:
    """True when PYTHON is the interpreter running Vizsla (so vizsla and its packages are importable).

    Paths are compared unresolved: every venv's bin/python links to the same base binary."""
    return os.path.abspath(python) == os.path.abspath(sys.executable)


def vizsla_import_root() -> str:
    """The folder holding the `vizsla` package (src/ of a checkout, or site-packages)."""
    import vizsla

    return str(Path(vizsla.__file__).resolve().parent.parent)


def resolve_python(python: str | None) -> str:
    """The interpreter's path: PYTHON as given (a path, or a name found on PATH), else Vizsla's own.

    A missing or non-executable interpreter is a UserError before anything runs."""
    if not python:
        return sys.executable
    candidate = Path(python).expanduser()
    if candidate.parent == Path(".") and not candidate.exists():
        found = shutil.which(python)
        if found is None:
            raise UserError(f"--python {python}: no such interpreter on PATH", hint="give its full path")
        return found
    if not candidate.is_file():
        raise UserError(
            f"--python {python}: {candidate} does not exist",
            hint="point it at a virtual environment's bin/python, e.g. --python ~/venvs/np1/bin/python",
        )
    if not os.access(candidate, os.X_OK):
        raise UserError(f"--python {python}: {candidate} is not executable", hint=f"chmod +x {candidate}")
    return os.path.abspath(candidate)


_PROBE = (
    "import importlib.util, json, sys; "
    "print(json.dumps({'version': sys.version.split()[0], 'executable': sys.executable, "
    "'sagemaker': importlib.util.find_spec('sagemaker') is not None}))"
)
PROBE_TIMEOUT_S = 60.0


def has_real_sagemaker(python: str) -> bool:
    """True when PYTHON can import an installed `sagemaker` (the real SDK), so the shim must not shadow it.

    Vizsla's own interpreter is asked in-process; another one by running it once (which also checks that
    it starts at all: a broken interpreter is a UserError naming it)."""
    if same_interpreter(python):
        from vizsla.scriptmode.sagemaker_shim import sagemaker_shim_path

        spec = importlib.util.find_spec("sagemaker")
        # a process that loaded an inference handler has the shim at the end of sys.path: not the real SDK
        return spec is not None and not str(spec.origin).startswith(sagemaker_shim_path())
    return bool(probe(python).get("sagemaker"))


def probe(python: str) -> dict[str, Any]:
    """Version, executable and whether `sagemaker` is installed, as PYTHON reports them."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        done = subprocess.run(
            [python, "-c", _PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise UserError(f"cannot run the interpreter {python}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise UserError(f"the interpreter {python} fails to start: {' | '.join(tail)}")
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise UserError(
            f"the interpreter {python} is not a Python interpreter: {done.stdout[:200]!r}"
        ) from None


_IMPORT_ERROR = re.compile(
    r"^(?P<kind>ModuleNotFoundError|ImportError): (?P<message>.*?(?:No module named '(?P<module>[^']+)'"
    r"|cannot import name '(?P<name>[^']+)'(?: from '(?P<origin>[^']+)')?).*)$"
)


def diagnose_import_error(lines: list[str], python: str) -> str | None:
    """A message naming the module and the interpreter when the script died of an import error, else None."""
    for line in reversed(lines):
        match = _IMPORT_ERROR.match(line.strip())
        if match is None:
            continue
        if match["module"]:
            package = match["module"].split(".")[0]
            return (
                f"the script could not import {match['module']!r} in the interpreter {python} "
                f"({match['kind']}): install it there ({python} -m pip install {package}), or run the "
                "script under an interpreter that has it (--python PATH)"
            )
        origin = match["origin"] or "its module"
        return (
            f"the script could not import {match['name']!r} from {origin!r} in the interpreter {python} "
            f"({match['kind']}): that version of the package lacks it; pin the version the script was "
            "written for in that interpreter, or use --python PATH"
        )
    return None
