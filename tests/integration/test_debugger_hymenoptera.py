"""A healthy fine-tune on real photos: every default debugger rule that has data ends NoIssuesFound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vizsla.jobs import run_job
from vizsla.spec import build_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_healthy_run_on_real_photos_finds_no_issues(hymenoptera: Path, tmp_path: Path) -> None:
    spec = build_spec(
        {
            "output": str(tmp_path / "healthy"),
            "data": {"root": str(hymenoptera)},
            "model": {"name": "efficientnet_lite0", "image_size": 160},
            "train": {"epochs": 2, "batch_size": 32, "finetune": "full", "lr": 1e-3},
            "debug": {"enabled": True, "save_interval": 2},
            "tracking": {"enabled": False},
        }
    )
    result = run_job(spec, progress=False)

    assert result["status"] == "Completed"
    assert result["metrics"]["valid_accuracy"] > 0.8
    rules = json.loads((tmp_path / "healthy" / "debug" / "rules.json").read_text())["rules"]
    assert len(rules) >= 10
    verdicts = {rule["name"]: rule["status"] for rule in rules}
    # efficientnet_lite0 has ReLU6 only: no tanh/sigmoid output for SaturatedActivation to watch (NoData)
    no_data = {name for name, status in verdicts.items() if status == "NoData"}
    assert no_data <= {"SaturatedActivation"}, verdicts
    assert all(status in ("NoIssuesFound", "Skipped", "NoData") for status in verdicts.values()), verdicts
    assert sum(status == "NoIssuesFound" for status in verdicts.values()) >= 9, verdicts
