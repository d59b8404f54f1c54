"""Heavy decoding (large noise JPEGs, small model input): Dataloader and CPUBottleneck trigger with
num_workers=0 and name the fix; the same job with 2 workers does not trigger them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vizsla.profiler import ProfileSpec, create_profile_callbacks

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def large_jpegs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 classes of 2000x1500 q95 noise JPEGs (~20 ms to decode each, even in draft mode)."""
    root = tmp_path_factory.mktemp("large-jpegs")
    for split, count in (("train", 16), ("valid", 2)):
        for label, channel in (("red", 0), ("blue", 2)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                rng = np.random.default_rng([len(split), channel, i])
                pixels = rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
                pixels[..., channel] //= 2
                Image.fromarray(pixels).save(folder / f"{i:03d}.jpg", quality=95)
    return root


def profile_job(data: Path, output: Path, workers: int) -> dict[str, dict]:
    import torch

    from vizsla.jobs import run_job
    from vizsla.spec import build_spec
    from vizsla.testing.jobs import tiny_spec_dict

    raw = tiny_spec_dict(data, output, epochs=2, batch_size=8)
    raw["data"]["num_workers"] = workers
    raw["model"] = {"name": "efficientnet_lite0", "weights": "none", "image_size": 96}
    spec = build_spec(raw)
    # One intra-op thread: the comparison is about where decoding runs, not about OpenMP under load.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        callbacks = create_profile_callbacks(ProfileSpec(enabled=True, interval_ms=100), output)
        assert run_job(spec, callbacks=callbacks, progress=False)["status"] == "Completed"
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((output / "profile" / "summary.json").read_text())
    return {f["rule"]: f for f in summary["rules"]}


def test_no_workers_is_input_bound(large_jpegs: Path, tmp_path: Path) -> None:
    rules = profile_job(large_jpegs, tmp_path / "job", workers=0)
    loader, cpu = rules["Dataloader"], rules["CPUBottleneck"]
    assert loader["verdict"] == "Triggered", loader["message"]
    assert loader["numbers"]["data_wait_share_median"] > 0.2
    assert loader["recommendation"].startswith("raise data.num_workers from 0 to ")
    assert cpu["verdict"] == "Triggered", cpu["message"]
    assert "data.num_workers from 0" in cpu["recommendation"]


def test_workers_hide_decoding(large_jpegs: Path, tmp_path: Path) -> None:
    rules = profile_job(large_jpegs, tmp_path / "job", workers=2)
    assert rules["Dataloader"]["verdict"] == "NoIssues", rules["Dataloader"]["message"]
    assert rules["CPUBottleneck"]["verdict"] == "NoIssues", rules["CPUBottleneck"]["message"]
