"""A head-only job is served from the backbone export its training made: quick start, no torch, no export."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

START_LIMIT_S = 15.0  # the target is 5 s on a quiet machine; CI machines are shared and loaded


@pytest.fixture(scope="module")
def head_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished head-only tiny job whose feature extraction exported its backbone to ONNX (job cache)."""
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec
    from vizsla.testing.images import make_image_folder
    from vizsla.testing.jobs import tiny_spec_dict

    root = tmp_path_factory.mktemp("headonly")
    data = make_image_folder(root / "data", classes=("cat", "dog", "fox"), per_class=10, seed=0)
    spec = tiny_spec_dict(data, root / "job", epochs=3, finetune="head", extract_backend="onnx")
    spec["cache_dir"] = str(root / "cache")
    result = run_job(build_spec(spec), progress=False)
    assert result["status"] == "Completed", result
    assert result["feature_cache"]["backend"] == "onnx", result["feature_cache"]
    assert list((root / "cache" / "onnx").glob("*-32x32.onnx")), "extraction wrote no backbone export"
    return root / "job"


def _files(folder: Path) -> set[str]:
    return (
        {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()
    )


def _torch_probabilities(job: Path, images: np.ndarray) -> np.ndarray:
    import torch

    import vizsla

    with torch.inference_mode():
        return torch.softmax(vizsla.load_model(job)(torch.from_numpy(images)), 1).numpy()


def test_served_from_the_cached_backbone_export_like_torch(head_job: Path):
    from vizsla.serving.runtime import load_served_model

    cache = head_job.parent / "cache"
    before = _files(cache)
    served = load_served_model(head_job)
    assert served.runtime == "onnx"
    assert served.check["digest_source"] == "job"
    assert Path(served.check["reused_backbone"]).parent == cache / "onnx"
    assert _files(cache) == before and not (head_job / "model" / "onnx").exists()  # nothing exported
    images = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    got, expected = served.predict(images), _torch_probabilities(head_job, images)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_the_app_starts_without_importing_torch(head_job: Path):
    code = (
        "import sys\n"
        "from vizsla.serving.app import create_app\n"
        "from vizsla.serving.settings import ServeSettings\n"
        f"app = create_app(ServeSettings(model_path={str(head_job)!r}))\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules)\n"
        "print(app.state.vizsla.runtime, heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "onnx []", done.stdout + done.stderr


def test_a_moved_or_retrained_model_gets_its_own_backbone_export(head_job: Path, tmp_path: Path):
    """A moved job folder still finds its backbone through its own records; a model folder without them
    (copied alone) gets the digest computed with torch once, recorded; a changed backbone (other weights,
    same folder) never reuses the old export."""
    import torch

    import vizsla
    from vizsla.models.io import save_model
    from vizsla.serving.runtime import load_served_model

    moved = tmp_path / "job"
    shutil.copytree(head_job, moved)  # a relocatable job: its result.json names its model relatively
    assert load_served_model(moved).check["digest_source"] == "job"
    (moved / "result.json").unlink()  # now a model folder without its job's records
    first = load_served_model(moved)
    assert first.runtime == "onnx" and first.check["digest_source"] == "torch"
    assert (moved / "model" / "onnx" / "backbone.json").is_file()
    again = load_served_model(moved)
    assert again.check["digest_source"] == "record"
    assert again.check["reused_backbone"] == first.check["reused_backbone"]

    model = vizsla.load_model(moved)
    with torch.no_grad():
        next(model.backbone.parameters()).mul_(1.5)
    save_model(model, moved / "model")  # replaces the folder: the record goes with it
    changed = load_served_model(moved)
    assert changed.check["reused_backbone"] != first.check["reused_backbone"]
    images = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(changed.predict(images), _torch_probabilities(moved, images), atol=1e-5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_vizsla_serve_answers_within_seconds_reusing_the_backbone_export(head_job: Path, record_property):
    cache = head_job.parent / "cache"
    before = _files(cache)
    shutil.rmtree(head_job / "model" / "onnx", ignore_errors=True)
    jpeg = next(p for p in sorted((head_job.parent / "data" / "test").rglob("*.jpg")))
    port = _free_port()
    command = [sys.executable, "-m", "vizsla", "serve", str(head_job), "--port", str(port)]
    log_file = head_job.parent / "serve.log"
    started = time.perf_counter()
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        while True:
            assert proc.poll() is None, log_file.read_text()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations", data=jpeg.read_bytes(), method="POST"
            )
            request.add_header("Content-Type", "image/jpeg")
            try:
                with urllib.request.urlopen(request, timeout=30) as reply:
                    status, body = reply.status, json.loads(reply.read())
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.perf_counter() - started < 120, log_file.read_text()
                time.sleep(0.05)
        first_answer_s = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(30)
    text = log_file.read_text()
    record_property("start_to_first_answer_s", round(first_answer_s, 2))
    print(f"vizsla serve of a head-only job: first answer {first_answer_s:.2f} s after the process started")
    assert status == 200 and body["predictions"][0]["label"] in ("cat", "dog", "fox")
    assert "reusing the backbone export" in text, text
    assert _files(cache) == before and not (head_job / "model" / "onnx").exists()  # no new export
    assert first_answer_s <= START_LIMIT_S, text
