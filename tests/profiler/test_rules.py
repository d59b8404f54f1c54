"""Profiler rules on synthetic ProfileData: each verdict, its numbers and the knob it names."""

from __future__ import annotations

import pytest

from vizsla.profiler.data import ProfileData, percentile
from vizsla.profiler.rules import create_rule, create_rules, list_rules
from vizsla.profiler.spec import ProfileSpec


def steps(n: int, data: float, compute: float, slow: dict[int, float] | None = None) -> list[dict]:
    """n train steps of `data` s data wait and `compute` s split over forward/backward/optimizer."""
    out = []
    for i in range(n):
        forward = compute / 2 + (slow or {}).get(i, 0.0)
        record = {
            "step": i,
            "epoch": 0,
            "batch_index": i,
            "batch_size": 8,
            "time": 1000.0 + i,
            "data_s": data,
            "forward_s": forward,
            "backward_s": compute / 3,
            "optimizer_s": compute / 6,
        }
        record["total_s"] = data + forward + compute / 3 + compute / 6
        out.append(record)
    return out


def system(n: int, cpu: list[float], gpus: list[dict] | None = None, iowait: float = 0.0) -> list[dict]:
    return [
        {
            "time": 1000.0 + i * 0.5,
            "cpu": list(cpu),
            "iowait": [iowait] * len(cpu),
            "memory_percent": 40.0,
            "rss_mb": 900.0,
            **({"gpus": gpus} if gpus else {}),
        }
        for i in range(n)
    ]


def profile(
    step_records: list[dict], samples: list[dict], workers: int = 0, cores: int = 2, **ctx
) -> ProfileData:
    timeline = [
        {"event": "fit_start", "time": 990.0, "epoch": 0},
        {"event": "epoch_start", "time": 999.0, "epoch": 0},
        {"event": "train_end", "time": 2000.0, "epoch": 0},
    ]
    context = {
        "cores": cores,
        "num_workers": workers,
        "batch_size": 8,
        "image_size": 96,
        "finetune": "full",
        "feature_cache": "auto",
        "job_start": 980.0,
        **ctx,
    }
    return ProfileData(system=samples, steps=step_records, job={"context": context, "timeline": timeline})


def test_percentile_matches_numpy_linear() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 95) == 5
    assert percentile([], 50) is None
    assert percentile(list(range(101)), 95) == 95


def test_every_rule_is_registered_and_runs_on_empty_data() -> None:
    names = list_rules()
    assert len(names) == 11 and names[0] == "OverallSystemUsage"
    for rule in create_rules():
        finding = rule.evaluate(ProfileData())
        assert finding.verdict == "InsufficientData", (rule.name, finding)


def test_dataloader_triggers_on_data_wait_and_names_num_workers() -> None:
    finding = create_rule("Dataloader").evaluate(profile(steps(20, data=0.3, compute=0.2), []))
    assert finding.verdict == "Triggered"
    assert finding.numbers["data_wait_share_median"] == pytest.approx(0.6)
    assert "raise data.num_workers from 0 to 2" in finding.recommendation


def test_dataloader_quiet_when_loader_keeps_up_and_flags_too_many_workers() -> None:
    fast = steps(20, data=0.002, compute=0.2)
    assert create_rule("Dataloader").evaluate(profile(fast, [], workers=2)).verdict == "NoIssues"
    crowded = create_rule("Dataloader").evaluate(profile(fast, [], workers=8, cores=2))
    assert crowded.verdict == "Triggered"
    assert "lower data.num_workers from 8 to 2" in crowded.recommendation


def test_dataloader_with_enough_workers_points_at_the_images() -> None:
    finding = create_rule("Dataloader").evaluate(profile(steps(20, 0.3, 0.2), [], workers=2))
    assert finding.verdict == "Triggered" and "input size" in finding.recommendation


def test_cpu_bottleneck_cpu_only_needs_busy_cores_and_data_wait() -> None:
    busy = system(30, [100.0, 60.0])
    stalled = create_rule("CPUBottleneck").evaluate(profile(steps(20, 0.3, 0.2), busy))
    assert stalled.verdict == "Triggered" and "data.num_workers from 0 to 2" in stalled.recommendation
    fed = create_rule("CPUBottleneck").evaluate(profile(steps(20, 0.001, 0.2), busy, workers=2))
    assert fed.verdict == "NoIssues"


def test_cpu_bottleneck_with_gpu_follows_sagemaker() -> None:
    idle_gpu = [{"util": 3.0, "memory_percent": 20.0}]
    busy_gpu = [{"util": 95.0, "memory_percent": 20.0}]
    hot = system(30, [95.0, 20.0], idle_gpu)
    assert create_rule("CPUBottleneck").evaluate(profile(steps(20, 0.001, 0.2), hot)).verdict == "Triggered"
    ok = system(30, [95.0, 20.0], busy_gpu)
    assert create_rule("CPUBottleneck").evaluate(profile(steps(20, 0.001, 0.2), ok)).verdict == "NoIssues"


def test_io_bottleneck() -> None:
    finding = create_rule("IOBottleneck").evaluate(
        profile(steps(20, 0.3, 0.2), system(30, [20, 20], iowait=80))
    )
    assert finding.verdict == "Triggered" and "local SSD" in finding.recommendation
    quiet = create_rule("IOBottleneck").evaluate(profile(steps(20, 0.3, 0.2), system(30, [20, 20], iowait=5)))
    assert quiet.verdict == "NoIssues"


def test_step_outlier_finds_the_slow_steps_and_their_phase() -> None:
    data = profile(steps(40, data=0.01, compute=0.1, slow={7: 0.5, 23: 0.8, 31: 0.4}), [])
    finding = create_rule("StepOutlier").evaluate(data)
    assert [d["step"] for d in finding.details] == [7, 23, 31]
    assert {d["phase"] for d in finding.details} == {"forward_s"}
    assert finding.verdict == "Triggered"  # 3 of 39 steps > 5 %
    assert "forward" in finding.recommendation


def test_step_outlier_ignores_jitter_and_first_step() -> None:
    records = steps(40, 0.01, 0.1)
    for i, r in enumerate(records):
        r["total_s"] *= 1 + 0.03 * (i % 3)  # regular jitter
    records[0]["total_s"] = 5.0  # warm-up step
    finding = create_rule("StepOutlier").evaluate(profile(records, []))
    assert finding.verdict == "NoIssues" and finding.details == []


def test_low_gpu_utilization_and_batch_size_on_gpu() -> None:
    gpus = [{"util": 30.0, "memory_percent": 25.0, "power_w": 70.0}]
    data = profile(steps(20, 0.001, 0.1), system(30, [40.0, 30.0], gpus))
    low = create_rule("LowGPUUtilization").evaluate(data)
    assert low.verdict == "Triggered" and "train.batch_size from 8 to 16" in low.recommendation
    batch = create_rule("BatchSize").evaluate(data)
    assert batch.verdict == "Triggered" and "increase train.batch_size from 8 to 16" in batch.recommendation


def test_batch_size_cpu_only() -> None:
    idle = create_rule("BatchSize").evaluate(profile(steps(20, 0.001, 0.1), system(30, [40.0, 30.0])))
    assert idle.verdict == "Triggered" and "train.batch_size from 8 to 16" in idle.recommendation
    busy = create_rule("BatchSize").evaluate(profile(steps(20, 0.001, 0.1), system(30, [99.0, 98.0])))
    assert busy.verdict == "NoIssues"


def test_gpu_memory_increase_and_load_balancing() -> None:
    samples = system(60, [50.0, 50.0])
    for i, s in enumerate(samples):
        s["gpus"] = [
            {"util": 90.0, "memory_percent": 10.0 + i},
            {"util": 5.0 + (i % 3), "memory_percent": 10.0},
        ]
    data = profile(steps(20, 0.001, 0.1), samples)
    grows = create_rule("GPUMemoryIncrease").evaluate(data)
    assert grows.verdict == "Triggered" and all(d["gpu"] == 0 for d in grows.details)
    unbalanced = create_rule("LoadBalancing").evaluate(data)
    assert unbalanced.verdict == "Triggered" and unbalanced.numbers["max_distance"] > 0.9


def test_max_initialization_time() -> None:
    data = profile(steps(20, 0.001, 0.1), [])
    assert create_rule("MaxInitializationTime").evaluate(data).numbers["initialization_s"] == 10.0
    slow = create_rule("MaxInitializationTime", {"threshold": 0.1}).evaluate(data)
    assert slow.verdict == "Triggered" and "cache_dir" in slow.recommendation


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="StepOutlier has no parameter"):
        create_rule("StepOutlier", {"stdev": 2})
    with pytest.raises(ValueError, match="unknown profiler rule"):
        create_rule("NoSuchRule")
    with pytest.raises(ValueError):
        ProfileSpec(rules={"StepOutlier": {"stddev": "high"}})
    assert ProfileSpec(rules={"StepOutlier": {"stddev": 5}}).rules["StepOutlier"]["stddev"] == 5
