"""The layer contracts of pyproject.toml ([tool.importlinter]) hold; a deliberate violation breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
PACKAGE = REPO / "src" / "vizsla"
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(
    config: Path, *, cwd: Path, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on CONFIG in a process of its own (PYTHONPATH first: the package it analyses)."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)} if pythonpath else dict(os.environ)
    return subprocess.run(
        [sys.executable, "-c", LINT, "--config", str(config), "--no-cache"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )


def contracts() -> list[dict]:
    return tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]


def test_the_layer_contracts_hold() -> None:
    done = lint_imports(PYPROJECT, cwd=REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "message"),
    [
        ("training/metrics.py", "import vizsla.tracking", "vizsla.training is not allowed to import"),
        ("data/layout.py", "import mlflow", "Illegal imports of protected package mlflow"),
    ],
)
def test_a_deliberate_violation_breaks_the_contracts(
    tmp_path: Path, module: str, line: str, message: str
) -> None:
    """A copy of the package with one forbidden import added fails `lint-imports`, naming that import."""
    copy = tmp_path / "src" / "vizsla"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}  # noqa: E402, F401 - the violation under test\n")
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")

    done = lint_imports(tmp_path / "pyproject.toml", cwd=tmp_path, pythonpath=tmp_path / "src")

    assert done.returncode != 0, done.stdout[-4000:]
    assert "BROKEN" in done.stdout and message in done.stdout
    importer = "vizsla." + module.removesuffix(".py").replace("/", ".")
    imported = line.removeprefix("import ")
    assert f"{importer} -> {imported}" in done.stdout  # the copy was analysed, not the installed package


def test_the_infra_contract_names_every_other_module_of_vizsla() -> None:
    """A new top-level module of vizsla must be added to the vizsla.infra contract's forbidden list."""
    if not (PACKAGE / "infra").is_dir():
        pytest.skip("no vizsla.infra")
    (infra,) = [c for c in contracts() if c.get("source_modules") == ["vizsla.infra"]]
    names = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file())}
    expected = {f"vizsla.{name}" for name in names - {"__init__", "__main__", "infra", "errors"}}
    assert set(infra["forbidden_modules"]) == expected
