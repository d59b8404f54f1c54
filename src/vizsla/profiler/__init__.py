"""The profiler: where a job's time and resources went, with rules and a self-contained HTML report.

`create_profile_callbacks(spec, job_dir)` gives the trainer its collectors (system metrics, step phases,
job phases, optional torch.profiler window) and a last callback that writes profile/summary.json and
reports/profiler-report.html at fit_end. `build_profile_report(job_dir)` rebuilds both from profile/.

In a distributed job every process times its own steps: rank 0 profiles as above (its step records carry
"rank": 0), rank r > 0 only writes profile/steps-rank{r}.jsonl, which the LoadBalancing rule and the
report's per-rank section compare.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vizsla.callbacks import Callback, TrainState
from vizsla.jobdir import JobDir
from vizsla.profiler.spec import ProfileSpec, TorchTraceSpec

log = logging.getLogger("vizsla.profiler")

REPORT_NAME = "profiler-report.html"

__all__ = [
    "ProfileSpec",
    "TorchTraceSpec",
    "build_profile_report",
    "create_profile_callbacks",
    "report_path",
]


def report_path(job_dir: JobDir) -> Path:
    return job_dir.reports / REPORT_NAME


class ProfileReportCallback(Callback):
    """At fit_end, after the collectors have flushed: run the rules and write summary + report."""

    def __init__(self, spec: ProfileSpec, job_dir: JobDir) -> None:
        self.spec = spec
        self.job_dir = job_dir

    def fit_end(self, state: TrainState) -> None:
        build_profile_report(self.job_dir, self.spec, report=self.spec.report)


def create_profile_callbacks(
    spec: ProfileSpec | None, job_dir: JobDir | str | Path, *, rank: int = 0, world_size: int = 1
) -> list[Callback]:
    """The profiler's trainer callbacks for process `rank` of `world_size`, in firing order; [] when off."""
    if spec is None or not spec.enabled:
        return []
    from vizsla.profiler.collectors import JobPhaseCollector, StepPhaseCollector, SystemCollector
    from vizsla.profiler.data import (
        JOB_FILE,
        OPERATORS_FILE,
        STEPS_FILE,
        SYSTEM_FILE,
        TRACE_DIR,
        rank_steps_file,
    )

    job_dir = job_dir if isinstance(job_dir, JobDir) else JobDir(job_dir)
    out = job_dir.profile
    distributed = world_size > 1
    if rank > 0:
        # Only the step times: rank 0's sampler already sees its whole machine (every core, and every GPU
        # through NVML), so the other ranks there would record the same numbers again; a rank on another
        # machine shows a slow machine in its step times, which is what LoadBalancing compares. The job
        # phases, the torch.profiler window and the report belong to rank 0, which writes the job dir.
        path = out / rank_steps_file(rank)
        path.unlink(missing_ok=True)  # a resumed job profiles its remaining part afresh (as rank 0 does)
        return [StepPhaseCollector(path, rank=rank)]
    _clear_previous(out)
    callbacks: list[Callback] = [
        SystemCollector(out / SYSTEM_FILE, spec.interval_ms),
        StepPhaseCollector(out / STEPS_FILE, rank=0 if distributed else None),
        JobPhaseCollector(out / JOB_FILE, context={"world_size": world_size} if distributed else None),
    ]
    if spec.torch_trace is not None:
        from vizsla.profiler.collectors.torch_trace import TorchTraceCollector

        callbacks.append(TorchTraceCollector(out / TRACE_DIR, out / OPERATORS_FILE, spec.torch_trace))
    callbacks.append(ProfileReportCallback(spec, job_dir))
    return callbacks


def _clear_previous(profile_dir: Path) -> None:
    """A resumed job profiles its remaining part afresh: old samples would mix two processes' clocks.

    Rank 0 also removes every other rank's old step file: a job resumed with fewer processes would
    otherwise show ranks that no longer run. The other ranks write theirs only at their first epoch end,
    long after this (they meet rank 0 in the first gradient all-reduce), so no new file is lost.
    """
    from vizsla.profiler.data import JOB_FILE, RANK_STEPS_GLOB, STEPS_FILE, SYSTEM_FILE

    for name in (SYSTEM_FILE, STEPS_FILE, JOB_FILE):
        (profile_dir / name).unlink(missing_ok=True)
    if profile_dir.is_dir():
        for path in profile_dir.glob(RANK_STEPS_GLOB):
            path.unlink(missing_ok=True)


def build_profile_report(
    job_dir: JobDir | str | Path, spec: ProfileSpec | None = None, *, report: bool = True
) -> dict[str, Any]:
    """Run the rules over job_dir/profile/, write summary.json (and the HTML report); return the summary."""
    from vizsla.profiler.report import write_report
    from vizsla.profiler.summary import build_summary

    job_dir = job_dir if isinstance(job_dir, JobDir) else JobDir(job_dir)
    summary = build_summary(job_dir.profile, (spec or ProfileSpec()).rules)
    if report:
        write_report(summary, report_path(job_dir))
    for finding in summary["rules"]:
        if finding["triggered"]:
            log.info(
                "profiler rule %s: %s -> %s", finding["rule"], finding["message"], finding["recommendation"]
            )
    return summary
