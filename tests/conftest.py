"""Shared fixtures: tiny generated image folders and job specs that train in seconds on a CPU."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"

# Never reach for a model hub from tests: weights come from installed packages or files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Every `vizsla train` a test starts runs in a process of its own and leaves no resident worker behind
# (vizsla.resident); tests/resident turns it on for its own commands.
os.environ["VIZSLA_RESIDENT"] = "0"


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or fill the user's ~/.cache/vizsla (features, validation verdicts, datasets) or
    register endpoints in ~/.vizsla."""
    os.environ["VIZSLA_CACHE_DIR"] = str(tmp_path_factory.mktemp("vizsla-cache"))
    os.environ["VIZSLA_HOME"] = str(tmp_path_factory.mktemp("vizsla-home"))  # endpoint registry


def shared_dataset(name: str) -> Path:
    """Path of a real-photo dataset in ../shared/datasets, or skip the test when this checkout has none."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real photos not available: {path} (only on the project's own machines)")
    return path


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """Three classes x 10 images per split of small distinguishable images."""
    from vizsla.testing.images import make_image_folder

    return make_image_folder(tmp_path / "data", classes=("cat", "dog", "fox"), per_class=10, seed=0)


@pytest.fixture(scope="session")
def hymenoptera() -> Path:
    """The ants-vs-bees photos (train/val, no test split, one GIF placeholder)."""
    return shared_dataset("hymenoptera")


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLAlchemy URL of a throw-away PostgreSQL server shared by the session, or skip when none can run."""
    import importlib.util

    from vizsla.testing.postgres import find_pg_bin, temporary_postgres

    if find_pg_bin() is None:
        pytest.skip(
            "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on PATH; "
            "`.ci/run` installs them with `apt-get install postgresql`"
        )
    if importlib.util.find_spec("psycopg2") is None:
        pytest.skip("psycopg2 is not installed: pip install 'vizsla[postgres]' (or the dev extra)")
    with temporary_postgres(tmp_path_factory.mktemp("postgres")) as url:
        yield url
