"""`vizsla --version` prints the installed version, fast (no torch or MLflow import)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from vizsla.testing.cli import invoke_cli


def test_version_prints_the_installed_version_without_heavy_imports() -> None:
    probe = (
        "import sys; sys.argv = ['vizsla', '--version']\n"
        "from vizsla.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'mlflow', 'onnxruntime', 'fastapi') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"vizsla {importlib.metadata.version('vizsla')}", "heavy: []"]


def test_short_flag_and_help_mention() -> None:
    code, output = invoke_cli("-V")
    assert code == 0 and output.strip() == f"vizsla {importlib.metadata.version('vizsla')}"
    code, output = invoke_cli("--help")
    assert code == 0 and "--version" in output
