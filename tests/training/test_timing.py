"""Honest job times: result.json's duration counts from the command's start and splits into phases."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from vizsla.callbacks import Callback
from vizsla.jobdir import JobDir
from vizsla.jobs import run_job
from vizsla.spec import build_spec
from vizsla.testing.jobs import tiny_spec_dict
from vizsla.training.setup import earlier_attempts
from vizsla.training.timing import PHASES, PhaseTimer, format_seconds, phases_text


def test_phase_timer_counts_from_an_earlier_start_and_adds_up() -> None:
    timer = PhaseTimer(time.time() - 1.5)  # the caller's work before the timer existed
    with timer.phase("validate"):
        time.sleep(0.05)
    with pytest.raises(RuntimeError), timer.phase("train"):  # a failing phase still counts
        time.sleep(0.02)
        raise RuntimeError
    duration = timer.stop()
    time.sleep(0.02)
    assert timer.elapsed() == duration, "stop() fixes the end"
    phases = timer.phases()
    assert list(phases) == list(PHASES)
    assert sum(phases.values()) == pytest.approx(round(duration, 3), abs=1e-9)
    assert phases["startup"] >= 1.5 and phases["validate"] >= 0.05 and phases["train"] >= 0.02
    assert phases["extract"] == 0.0
    assert datetime.fromisoformat(timer.start_time).timestamp() == pytest.approx(timer.started, abs=1)


def test_a_start_in_the_future_is_clamped_to_now() -> None:
    timer = PhaseTimer(time.time() + 60)
    assert 0 <= timer.elapsed() < 1


def test_short_texts() -> None:
    assert [format_seconds(s) for s in (0.34, 9.54, 98.4, 564, 3725)] == [
        "0.3 s",
        "9.5 s",
        "98 s",
        "9m 24s",
        "1h 02m 05s",
    ]
    phases = {"startup": 1.0, "validate": 9.0, "extract": 0.0, "train": 5.0, "evaluate": 0.3, "finalize": 2}
    assert phases_text(phases) == "startup 1.0 s, validate 9.0 s, train 5.0 s, evaluate 0.3 s, finalize 2.0 s"


def test_earlier_attempts_from_the_checkpoint() -> None:
    timer = PhaseTimer(1000.0)
    assert earlier_attempts(None, timer) == (1, 0.0)
    assert earlier_attempts({"started_at": "x"}, timer) == (2, None)  # written before attempts were timed
    resumed = {"attempt": 1, "attempt_started": 500.0, "earlier_s": 0.0, "elapsed_s": 40.0}
    assert earlier_attempts({"timing": resumed}, timer) == (2, 40.0)
    third = {"attempt": 2, "attempt_started": 900.0, "earlier_s": 40.0, "elapsed_s": 25.0}
    assert earlier_attempts({"timing": third}, timer) == (3, 65.0)
    restarted = {"attempt": 2, "attempt_started": 1000.0, "earlier_s": 40.0, "elapsed_s": 25.0}
    assert earlier_attempts({"timing": restarted}, timer) == (2, 40.0), "torchrun restart: same attempt"


def test_head_job_with_a_cold_feature_cache_reports_honest_phases(tiny_folder, tmp_path) -> None:
    spec = tiny_spec_dict(tiny_folder, tmp_path / "job", finetune="head", epochs=2)
    spec["cache_dir"] = str(tmp_path / "cache")  # cold: the features are extracted in this job
    started = time.time() - 2.0  # as the CLI passes its process start: imports before run_job
    result = run_job(build_spec(spec), progress=False, started=started)
    job = JobDir(spec["output"])
    saved = job.read_result()
    assert saved["status"] == "Completed" and saved["feature_cache"]["hit"] is False
    phases = saved["phases"]
    assert list(phases) == list(PHASES) and phases == result["phases"]
    assert sum(phases.values()) == pytest.approx(saved["duration_s"], abs=0.5)
    assert all(phases[name] > 0 for name in ("startup", "validate", "extract", "train", "finalize")), phases
    assert phases["extract"] >= saved["feature_cache"]["build_s"] - 0.01
    assert saved["duration_s"] >= phases["extract"] and phases["startup"] >= 2.0
    assert datetime.fromisoformat(saved["start_time"]).timestamp() == pytest.approx(started, abs=1)
    assert saved["attempt_start_time"] == saved["start_time"]
    assert saved["attempts"] == 1 and saved["total_duration_s"] == saved["duration_s"]
    end = datetime.fromisoformat(saved["end_time"]).timestamp()
    assert end - started == pytest.approx(saved["duration_s"], abs=1.5)
    log = job.log.read_text()
    assert "feature cache" in log and "built" in log, log
    assert "data: 3 classes" in log, log
    assert "Time per phase" in job.training_report.read_text()


def test_resumed_job_times_this_attempt_and_the_total(tiny_folder, tmp_path) -> None:
    class StopAfterFirstEpoch(Callback):
        def epoch_end(self, state):
            state.request_stop("stop after one epoch")

    spec = build_spec(tiny_spec_dict(tiny_folder, tmp_path / "resumed", epochs=2))
    first = run_job(spec, callbacks=[StopAfterFirstEpoch()], progress=False)
    assert first["status"] == "Stopped" and first["attempts"] == 1
    second = run_job(spec, resume=True, progress=False)
    assert second["status"] == "Completed" and second["attempts"] == 2
    assert second["start_time"] == first["start_time"], "start_time stays the first attempt's"
    assert second["attempt_start_time"] >= first["attempt_start_time"]
    assert sum(second["phases"].values()) == pytest.approx(second["duration_s"], abs=0.5)
    # the first attempt counts up to its checkpoint (its evaluation and finalize came after)
    assert second["duration_s"] < second["total_duration_s"] < second["duration_s"] + first["duration_s"]
