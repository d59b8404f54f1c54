"""A tiny head-only job (trained once a session) and image folders for the batch-transform tests."""

from __future__ import annotations

from pathlib import Path

import pytest

CLASSES = ("cat", "dog", "fox")


@pytest.fixture(scope="session")
def head_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished head-only tiny job (32 px test model) whose extraction exported its backbone to ONNX."""
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec
    from vizsla.testing.images import make_image_folder
    from vizsla.testing.jobs import tiny_spec_dict

    root = tmp_path_factory.mktemp("transform-job")
    data = make_image_folder(root / "data", classes=CLASSES, per_class=10, seed=0)
    spec = tiny_spec_dict(data, root / "job", epochs=3, finetune="head", extract_backend="onnx")
    result = run_job(build_spec(spec), progress=False)
    assert result["status"] == "Completed", result
    return root / "job"


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 images in nested class folders (JPEG and PNG): the inputs most tests transform."""
    from vizsla.testing.images import make_image_folder

    root = tmp_path_factory.mktemp("transform-photos")
    return make_image_folder(root / "photos", classes=CLASSES, per_class=8, splits=(), seed=7)


def _tree(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every output file under ROOT (not the checkpoint, not summary.json's
    timings): what must be byte-identical between a resumed and an uninterrupted run."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".vizsla-transform" not in p.parts and p.name != "summary.json"
    }


@pytest.fixture
def tree():
    return _tree
