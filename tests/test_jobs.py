"""The composition root: which callbacks a job gets, in what order, and the tools' report sections."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from vizsla.callbacks import Callback, CallbackRunner, ReportSection, TrainState
from vizsla.jobdir import JobDir
from vizsla.jobs import job_callbacks, report_sections
from vizsla.spec import build_spec
from vizsla.testing.jobs import tiny_spec_dict


def _spec(tmp_path: Path, **sections: object) -> object:
    mapping = {**tiny_spec_dict(tmp_path / "data", tmp_path / "job"), **sections}
    return build_spec(mapping)


def test_a_job_gets_profiler_then_debugger_then_tracking(tmp_path: Path) -> None:
    spec = _spec(tmp_path, profile={"enabled": True}, debug={"enabled": True}, tracking={"enabled": True})
    names = [type(c).__name__ for c in job_callbacks(TrainState(spec=spec, job_dir=JobDir(spec.output)))]
    debugger = names.index("DebugHook")
    assert names[debugger:] == ["DebugHook", "RuleRunner", "DebugOutputs", "MlflowTracker"]
    assert debugger > 0  # the profiler's callbacks come first


def test_other_ranks_get_only_the_profiler_and_a_plain_job_nothing(tmp_path: Path) -> None:
    spec = _spec(tmp_path, profile={"enabled": True}, debug={"enabled": True}, tracking={"enabled": True})
    rank1 = job_callbacks(TrainState(spec=spec, job_dir=JobDir(spec.output), rank=1, world_size=2))
    assert rank1 and all(type(c).__module__.startswith("vizsla.profiler") for c in rank1)
    assert job_callbacks(TrainState(spec=_spec(tmp_path), job_dir=JobDir(spec.output))) == []


def test_the_debugger_section_follows_the_saved_out_dir(tmp_path: Path) -> None:
    spec = _spec(tmp_path, debug={"enabled": True, "out_dir": "tensors"})
    job = JobDir(spec.output)
    job.root.mkdir(parents=True)
    job.spec.write_text(spec.to_yaml())
    assert report_sections(job) == []  # no store yet
    (job.root / "tensors").mkdir()
    (job.root / "debug").mkdir()  # the default folder is not the store of this job
    (section,) = report_sections(job)
    assert section.name == "debugger" and "tensors/" in section.html


class Outputs(Callback):
    def __init__(self, name: str) -> None:
        self.name, self.finished = name, False

    def on_finish(self, state: TrainState) -> None:
        self.finished = True

    def report_sections(self, job_dir: JobDir) -> list[ReportSection]:
        return [ReportSection(self.name, f"<p>{self.name}</p>")]


class Broken(Callback):
    def epoch_end(self, state: TrainState) -> None:
        raise RuntimeError("epoch")

    def on_finish(self, state: TrainState) -> None:
        raise RuntimeError("finish")

    def report_sections(self, job_dir: JobDir) -> list[ReportSection]:
        raise RuntimeError("sections")


def test_finish_hooks_survive_a_failing_callback(caplog: pytest.LogCaptureFixture) -> None:
    first, last = Outputs("first"), Outputs("last")
    runner = CallbackRunner([first, Broken(), last, object()])  # a duck-typed callback has no hooks
    state = TrainState(spec=None, job_dir=None)
    with caplog.at_level(logging.ERROR, logger="vizsla.callbacks"):
        runner.finish(state)
        sections = runner.report_sections(None)
    assert first.finished and last.finished
    assert [s.name for s in sections] == ["first", "last"]
    assert "Broken" in caplog.text


def test_a_disabled_callback_still_adds_its_section() -> None:
    class Flaky(Outputs):
        def epoch_end(self, state: TrainState) -> None:
            raise RuntimeError("epoch")

    runner = CallbackRunner([Flaky("flaky")])
    runner.fire("epoch_end", TrainState(spec=None, job_dir=None))
    assert runner.callbacks == [] and [s.name for s in runner.report_sections(None)] == ["flaky"]
