"""The job's own copy of the user's source dir (SageMaker's /opt/ml/code), the script's working directory."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from vizsla.jobdir import JobDir
from vizsla.scriptmode.environment import ScriptCommand

# Never copied into the job's code folder: version control, caches and virtual environments.
_SKIP_NAMES = {".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache",
               ".ruff_cache", ".venv", "venv", ".tox", "node_modules"}  # fmt: skip
LARGE_COPY_BYTES = 200 * 1024 * 1024  # a source dir above this is copied with a warning (use --source-dir)


def stage_source(
    command: ScriptCommand, code_dir: Path, skip: tuple[Path, ...] = (), *, whole_folder: bool = True
) -> tuple[ScriptCommand, int]:
    """Copy the source dir to CODE_DIR and return the command run from there, and the bytes copied.

    SageMaker packs source_dir into sourcedir.tar.gz and unpacks it into /opt/ml/code for every job, the
    script's cwd (sagemaker-python-sdk src/sagemaker/fw_utils.py `tar_and_upload_dir`; sagemaker-training-
    toolkit src/sagemaker_training/process.py runs it with cwd=environment.code_dir). So files a script
    writes to relative paths land in its job, never in the user's folder or a parallel trial's. Skipped:
    SKIP (the job directory itself when it lies inside the source dir), Vizsla job directories, caches,
    version control and virtual environments. Symlinks are copied as links.

    Without a source dir (WHOLE_FOLDER False) the SDK uploads the entry point alone (`tar_and_upload_dir`
    with directory=None); here the entry point's folder's top-level .py files and requirements.txt are
    copied, so sibling modules keep importing while data folders next to the script are never copied.
    """
    source = command.source_dir
    skipped = {p.resolve() for p in skip}
    total = 0

    def ignore(folder: str, names: list[str]) -> set[str]:
        nonlocal total
        out = set()
        top = Path(folder) == source
        for name in names:
            path = Path(folder) / name
            if name in _SKIP_NAMES or path.resolve() in skipped or _is_job_or_venv(path):
                out.add(name)
            elif not whole_folder and top and not _loose_code(path, command):
                out.add(name)
            elif path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        return out

    if code_dir.exists() or code_dir.is_symlink():
        shutil.rmtree(code_dir) if code_dir.is_dir() and not code_dir.is_symlink() else code_dir.unlink()
    shutil.copytree(source, code_dir, symlinks=True, ignore=ignore)
    staged = replace(command, entry_point=code_dir / command.user_entry_point, source_dir=code_dir)
    return staged, total


def _loose_code(path: Path, command: ScriptCommand) -> bool:
    """A file copied for an entry point given without a source dir: it, .py siblings, requirements.txt."""
    if path.name == command.user_entry_point:
        return True
    return path.is_file() and (path.suffix == ".py" or path.name == "requirements.txt")


def _is_job_or_venv(path: Path) -> bool:
    if not path.is_dir() or path.is_symlink():
        return False
    if (path / "pyvenv.cfg").is_file():
        return True
    return JobDir(path).spec.is_file() and JobDir(path).result.is_file()


def list_files(folder: Path) -> set[str]:
    """Relative paths of the regular files under FOLDER (symlinked folders not followed)."""
    if not folder.is_dir():
        return set()
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}
