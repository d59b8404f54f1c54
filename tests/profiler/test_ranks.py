"""Distributed profiling: per-rank step files, the LoadBalancing rank comparison, per-rank report section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vizsla.callbacks import TrainState
from vizsla.profiler import ProfileSpec, build_profile_report, create_profile_callbacks
from vizsla.profiler.collectors import JobPhaseCollector, StepPhaseCollector, SystemCollector
from vizsla.profiler.data import ProfileData
from vizsla.profiler.rules import create_rule
from vizsla.profiler.rules.load_balancing import rank_stats


def rank_steps(
    n: int, rank: int | None, data: float = 0.01, forward: float = 0.05, backward: float = 0.05, **extra
) -> list[dict]:
    """n steps of one process; steps 0 and 10 (first of each epoch) are slow, as a new epoch's loader is."""
    out = []
    for i in range(n):
        wait = data + (0.5 if i % 10 == 0 else 0.0)
        record = {
            "step": i,
            "epoch": i // 10,
            "batch_index": i % 10,
            "batch_size": 8,
            "time": 1000.0 + i,
            "data_s": wait,
            "forward_s": forward,
            "backward_s": backward,
            "optimizer_s": 0.01,
            **extra,
        }
        if rank is not None:
            record["rank"] = rank
        record["total_s"] = wait + forward + backward + 0.01
        out.append(record)
    return out


def write_profile(root: Path, per_rank: dict[int, list[dict]], world_size: int | None = 2) -> Path:
    """A job directory whose profile/ holds the step files of the given ranks (and rank 0's job.json)."""
    profile = root / "profile"
    profile.mkdir(parents=True)
    for rank, records in per_rank.items():
        name = "steps.jsonl" if rank == 0 else f"steps-rank{rank}.jsonl"
        (profile / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    context = {"cores": 2, "num_workers": 0, "batch_size": 8, "job_start": 990.0}
    if world_size is not None:
        context["world_size"] = world_size
    timeline = [
        {"event": "fit_start", "time": 995.0, "epoch": 0},
        {"event": "epoch_start", "time": 999.0, "epoch": 0},
        {"event": "train_end", "time": 1030.0, "epoch": 0},
        {"event": "fit_end", "time": 1031.0, "epoch": 0},
    ]
    (profile / "job.json").write_text(json.dumps({"context": context, "timeline": timeline}))
    return root


def load_balancing(root: Path, **params: float) -> dict:
    return create_rule("LoadBalancing", params).evaluate(ProfileData.load(root / "profile")).to_dict()


def test_balanced_ranks_do_not_trigger(tmp_path: Path) -> None:
    root = write_profile(tmp_path, {0: rank_steps(30, 0), 1: rank_steps(30, 1, data=0.012)})
    finding = load_balancing(root)
    assert finding["verdict"] == "NoIssues", finding["message"]
    assert finding["numbers"]["ranks"] == 2
    assert [d["rank"] for d in finding["details"]] == [0, 1]
    # each rank's first step is left out; the median ignores the slow first step of the second epoch
    assert finding["details"][0]["steps"] == 29
    assert finding["details"][0]["median_s"] == pytest.approx(0.12)


def test_a_slower_rank_triggers_and_is_named(tmp_path: Path) -> None:
    slow = rank_steps(30, 1, forward=0.1, backward=0.1)  # 0.22 s steps against rank 0's 0.12 s
    root = write_profile(tmp_path, {0: rank_steps(30, 0), 1: slow})
    finding = load_balancing(root)
    assert finding["verdict"] == "Triggered", finding["message"]
    assert finding["numbers"]["slow_rank"] == 1 and finding["numbers"]["measure"] == "step"
    assert finding["numbers"]["step_gap"] == pytest.approx(0.1 / 0.12, abs=1e-3)
    assert "rank 1" in finding["message"] and "rank 1's pace" in finding["recommendation"]
    assert finding["parameters"]["rank_threshold"] == 0.2
    # the gap (83 %) is under a raised threshold
    assert load_balancing(root, rank_threshold=0.9)["verdict"] == "NoIssues"


def test_lock_step_ranks_show_the_slow_one_before_the_all_reduce(tmp_path: Path) -> None:
    """Equal step times (the fast rank waits in backward): the data wait names the slow loader."""
    slow_loader = rank_steps(30, 1, data=0.08, backward=0.05)
    waiting = rank_steps(30, 0, data=0.01, backward=0.12)
    root = write_profile(tmp_path / "data", {0: waiting, 1: slow_loader})
    finding = load_balancing(root)
    assert finding["numbers"]["step_gap"] == pytest.approx(0.0, abs=1e-6)
    assert finding["verdict"] == "Triggered" and finding["numbers"]["measure"] == "data"
    assert finding["numbers"]["slow_rank"] == 1 and "batches" in finding["recommendation"]

    slow_device = rank_steps(30, 2, forward=0.12, backward=0.05)
    root = write_profile(
        tmp_path / "compute", {0: rank_steps(30, 0, backward=0.12), 2: slow_device}, world_size=3
    )
    finding = load_balancing(root)
    assert finding["verdict"] == "Triggered" and finding["numbers"]["measure"] == "to_sync"
    assert finding["numbers"]["slow_rank"] == 2 and "device" in finding["recommendation"]


def test_single_process_and_short_jobs_are_insufficient(tmp_path: Path) -> None:
    single = write_profile(tmp_path / "one", {0: rank_steps(30, None)}, world_size=None)
    finding = load_balancing(single)
    assert finding["verdict"] == "InsufficientData" and "distributed job" in finding["message"]
    short = write_profile(tmp_path / "short", {0: rank_steps(30, 0), 1: rank_steps(5, 1)})
    finding = load_balancing(short)
    assert finding["verdict"] == "InsufficientData" and "rank 1: 4" in finding["message"]


def test_profile_data_reads_rank_files(tmp_path: Path) -> None:
    root = write_profile(tmp_path, {0: rank_steps(12, 0), 1: rank_steps(12, 1), 3: rank_steps(12, 3)}, None)
    data = ProfileData.load(root / "profile")
    assert data.ranks == [0, 1, 3] and data.world_size == 4  # from the files when job.json does not say
    assert data.steps is data.rank_steps[0]  # rank 0 stays what every other rule reads
    assert [r["rank"] for r in data.rank_steps[3]] == [3] * 12
    assert ProfileData(steps=rank_steps(3, None)).ranks == [0]
    assert ProfileData().world_size == 1


def test_summary_and_report_show_per_rank_step_times(tmp_path: Path) -> None:
    root = write_profile(tmp_path / "two", {0: rank_steps(30, 0), 1: rank_steps(30, 1, forward=0.1)})
    summary = build_profile_report(root)
    ranks = summary["ranks"]
    assert ranks["world_size"] == 2
    assert [s["rank"] for s in ranks["stats"]] == [0, 1]
    assert ranks["stats"][1]["median_s"] == pytest.approx(0.17)
    assert ranks["stats"][1]["data_median_s"] == pytest.approx(0.01)
    assert ranks["stats"][0]["p90_s"] >= ranks["stats"][0]["median_s"]
    assert ranks["series"][1]["step"] == list(range(30)) and len(ranks["series"][1]["total_s"]) == 30
    saved = json.loads((root / "profile" / "summary.json").read_text())
    assert saved["ranks"]["stats"] == json.loads(json.dumps(ranks["stats"]))
    html = (root / "reports" / "profiler-report.html").read_text()
    assert "Per-rank step times" in html and 'id="fig-ranks"' in html and "Step time per rank" in html
    assert "<script src" not in html.replace(" ", "")

    single = write_profile(tmp_path / "one", {0: rank_steps(30, None)}, world_size=None)
    summary = build_profile_report(single)
    assert summary["ranks"]["world_size"] == 1 and len(summary["ranks"]["stats"]) == 1
    assert "Per-rank step times" not in (single / "reports" / "profiler-report.html").read_text()


def test_cli_sets_the_rank_threshold(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from vizsla.cli.profile import profile

    root = write_profile(tmp_path, {0: rank_steps(30, 0), 1: rank_steps(30, 1, forward=0.1)})  # 42 % gap
    app = typer.Typer()
    app.command()(profile)
    for value, verdict in (("0.3", "Triggered"), ("0.5", "NoIssues")):
        result = CliRunner().invoke(app, [str(root), "--set", f"LoadBalancing.rank_threshold={value}"])
        assert result.exit_code == 0, result.output
        finding = json.loads((root / "profile" / "rules" / "LoadBalancing.json").read_text())
        assert finding["verdict"] == verdict and finding["parameters"]["rank_threshold"] == float(value)
    assert ProfileSpec(rules={"LoadBalancing": {"rank_threshold": 0.3}}).rules["LoadBalancing"]
    with pytest.raises(ValueError, match="rank_threshold"):
        ProfileSpec(rules={"LoadBalancing": {"rank_threshold": "high"}})


def drive(collector: StepPhaseCollector, steps: int) -> None:
    """Fire one epoch of train-step events at a collector, as the trainer does."""
    state = TrainState(spec=None, job_dir=None)
    collector.fit_start(state)
    collector.epoch_start(state)
    for i in range(steps):
        state.batch_index, state.batch_size = i, 4
        collector.batch_start(state)
        collector.after_forward(state)
        collector.after_backward(state)
        state.global_step += 1
        collector.batch_end(state)
    collector.epoch_end(state)
    collector.fit_end(state)


def test_other_ranks_only_time_their_steps(tmp_path: Path) -> None:
    spec = ProfileSpec(enabled=True)
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "steps-rank1.jsonl").write_text('{"step": 99}\n')  # from before a resume
    callbacks = create_profile_callbacks(spec, tmp_path, rank=1, world_size=2)
    assert len(callbacks) == 1 and isinstance(callbacks[0], StepPhaseCollector)
    drive(callbacks[0], 3)
    written = sorted(p.name for p in (tmp_path / "profile").iterdir())
    assert written == ["steps-rank1.jsonl"]
    records = [json.loads(line) for line in (tmp_path / "profile" / "steps-rank1.jsonl").read_text().split()]
    assert [(r["step"], r["rank"]) for r in records] == [(0, 1), (1, 1), (2, 1)]
    assert not (tmp_path / "reports").exists()


def test_rank_zero_profiles_as_before_and_clears_old_rank_files(tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    profile.mkdir()
    for name in ("steps.jsonl", "steps-rank1.jsonl", "steps-rank3.jsonl", "system.jsonl"):
        (profile / name).write_text('{"step": 99}\n')
    spec = ProfileSpec(enabled=True)
    callbacks = create_profile_callbacks(spec, tmp_path, rank=0, world_size=2)
    assert list(profile.iterdir()) == []  # a resumed job starts its profile afresh, every rank's too
    kinds = [type(c).__name__ for c in callbacks]
    assert kinds == ["SystemCollector", "StepPhaseCollector", "JobPhaseCollector", "ProfileReportCallback"]
    steps = next(c for c in callbacks if isinstance(c, StepPhaseCollector))
    drive(steps, 2)
    assert {json.loads(line)["rank"] for line in (profile / "steps.jsonl").read_text().split()} == {0}
    job = next(c for c in callbacks if isinstance(c, JobPhaseCollector))
    assert job.context["world_size"] == 2

    single = create_profile_callbacks(spec, tmp_path / "single")  # the two-argument call of 1-process jobs
    assert [type(c) for c in single[:3]] == [SystemCollector, StepPhaseCollector, JobPhaseCollector]
    drive(single[1], 2)
    record = json.loads((tmp_path / "single" / "profile" / "steps.jsonl").read_text().split()[0])
    assert "rank" not in record and single[2].context == {}


def test_rank_stats_skip_the_profiler_window() -> None:
    data = ProfileData(
        steps=rank_steps(30, 0),
        operators={"affected_steps": [0, 4], "operators": []},
        rank_steps={1: rank_steps(30, 1)},
    )
    # the other ranks wait for rank 0's profiled steps at the all-reduce, so theirs are left out too
    assert [r["steps"] for r in rank_stats(data)] == [25, 25]
