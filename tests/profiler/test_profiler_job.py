"""A profiled tiny job end to end: files in profile/, injected slow steps found, report self-contained."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from vizsla.callbacks import Callback, TrainState
from vizsla.profiler import ProfileSpec, create_profile_callbacks
from vizsla.profiler.rules import list_rules

SLOW_STEPS = {5, 17}  # 0-based global steps
SLEEP_S = 0.5
EPOCHS = 3


class SlowSteps(Callback):
    """Sleeps inside chosen steps (at batch_start, after the profiler's mark: it lands in 'forward')."""

    def batch_start(self, state: TrainState) -> None:
        if state.global_step in SLOW_STEPS:
            time.sleep(SLEEP_S)


def run_profiled(data: Path, output: Path, *, trace: bool = True, **train) -> dict:
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec
    from vizsla.testing.jobs import tiny_spec_dict

    spec = build_spec(tiny_spec_dict(data, output, **train))
    profile = ProfileSpec(
        enabled=True, interval_ms=50, torch_trace={"wait": 1, "warmup": 1, "active": 2} if trace else None
    )
    return run_job(spec, callbacks=[*create_profile_callbacks(profile, output), SlowSteps()], progress=False)


@pytest.fixture(scope="module")
def profiled_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from vizsla.testing.images import make_image_folder

    root = tmp_path_factory.mktemp("profiled")
    data = make_image_folder(root / "data", classes=("cat", "dog", "fox"), per_class=10, seed=0)
    # One intra-op thread: OpenMP's spinning threads make steps erratic when other processes share the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run_profiled(data, root / "job", epochs=EPOCHS, batch_size=4)
    finally:
        torch.set_num_threads(threads)
    assert result["status"] == "Completed"
    return root / "job"


def test_profile_files(profiled_job: Path) -> None:
    profile = profiled_job / "profile"
    steps = [json.loads(line) for line in (profile / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(EPOCHS * 8))  # 30 images / batch 4 = 8 steps an epoch
    for record in steps:
        parts = record["data_s"] + record["forward_s"] + record["backward_s"] + record["optimizer_s"]
        assert record["total_s"] == pytest.approx(parts)
    samples = [json.loads(line) for line in (profile / "system.jsonl").read_text().splitlines()]
    assert len(samples) >= 5
    assert {"cpu", "iowait", "memory_percent", "rss_mb"} <= set(samples[0])
    assert "disk_read_bps" in samples[1] and "net_recv_bps" in samples[1]
    assert sorted(p.stem for p in (profile / "rules").glob("*.json")) == sorted(list_rules())
    operators = json.loads((profile / "operators.json").read_text())
    assert operators["steps"] == [2, 3] and operators["affected_steps"] == [0, 4] and operators["operators"]
    assert any("conv" in op["name"] for op in operators["operators"])
    trace = json.loads((profile / "trace" / operators["trace"]).read_text())
    assert trace["traceEvents"]


def test_job_phases(profiled_job: Path) -> None:
    summary = json.loads((profiled_job / "profile" / "summary.json").read_text())
    phases = summary["job"]["phases"]
    assert phases["initialization_s"] > 0 and phases["first_step_s"] > 0 and phases["finalization_s"] > 0
    splits = [(e["split"], e["after_training"]) for e in phases["evaluations"]]
    assert splits == [("valid", False)] * EPOCHS + [("valid", True), ("test", True)]
    assert [c["epoch"] for c in phases["checkpointing"]] == list(range(EPOCHS - 1))
    assert phases["total_s"] >= phases["initialization_s"] + phases["train_loop_s"]
    assert summary["steps"]["count"] == EPOCHS * 8
    assert sum(summary["steps"]["phase_share"].values()) == pytest.approx(1.0)


def test_injected_slow_steps_are_the_outliers(profiled_job: Path) -> None:
    finding = json.loads((profiled_job / "profile" / "rules" / "StepOutlier.json").read_text())
    found = {d["step"]: d for d in finding["details"]}
    assert SLOW_STEPS <= set(found), finding["message"]
    for step in SLOW_STEPS:
        assert found[step]["phase"] == "forward_s"
        assert found[step]["total_s"] >= SLEEP_S
    # on a quiet machine only the injected ones; allow one stray step from other processes' load
    assert len(set(found) - SLOW_STEPS) <= 1, finding["message"]


def test_report_is_self_contained(profiled_job: Path) -> None:
    html = (profiled_job / "reports" / "profiler-report.html").read_text()
    assert "Plotly.newPlot" in html and "<script src" not in html.replace(" ", "")
    page = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.DOTALL)  # plotly.js names URLs in strings
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert len(html) - len(page) > 1_000_000  # plotly.js itself is inline
    for section in ("Training job summary", "System usage", "Step time breakdown", "Top operators", "Rules"):
        assert section in html
    assert "StepOutlier" in html and "aten::" in html


def test_profile_cli_rebuilds_with_overrides(profiled_job: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from vizsla.cli.profile import profile

    app = typer.Typer()
    app.command()(profile)
    report = profiled_job / "reports" / "profiler-report.html"
    report.unlink()
    result = CliRunner().invoke(app, [str(profiled_job), "--set", "StepOutlier.min_steps=1000"])
    assert result.exit_code == 0, result.output
    assert report.is_file()
    finding = json.loads((profiled_job / "profile" / "rules" / "StepOutlier.json").read_text())
    assert finding["verdict"] == "InsufficientData" and finding["parameters"]["min_steps"] == 1000
    bad = CliRunner().invoke(app, [str(profiled_job), "--set", "StepOutlier.nope=1"])
    assert bad.exit_code != 0 and "nope" in str(bad.exception)


def test_profile_cli_refuses_a_job_without_profile(tmp_path: Path) -> None:
    from vizsla.cli.profile import profile
    from vizsla.errors import UserError

    with pytest.raises(UserError, match="no profiling data"):
        profile(tmp_path, set_=[], open_report=False)


def test_off_is_no_callbacks(tmp_path: Path) -> None:
    assert create_profile_callbacks(ProfileSpec(), tmp_path) == []
    assert create_profile_callbacks(None, tmp_path) == []


def test_head_only_on_cached_features(tmp_path: Path, tiny_folder: Path) -> None:
    result = run_profiled(tiny_folder, tmp_path / "job", trace=False, finetune="head", epochs=1, batch_size=4)
    assert result["status"] == "Completed"
    summary = json.loads((tmp_path / "job" / "profile" / "summary.json").read_text())
    assert summary["steps"]["count"] == 8
    assert summary["job"]["finetune"] == "head" and summary["operators"] is None
    assert (tmp_path / "job" / "reports" / "profiler-report.html").is_file()
