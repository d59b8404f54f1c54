"""What Vizsla attaches around a script process: the MLflow run and the profiler's system sampling.

Both reuse the built-in job's pieces (MlflowRun, SystemCollector, build_profile_report). The script has
no trainer events: the tracker drives the plain MLflow run API from the script's outputs; the profiler gets
a job timeline (process start, first and last step from the smdebug shim's steps.jsonl, process end).
Neither may fail the job: errors are logged as warnings.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from vizsla.infra.io import atomic_write_json
from vizsla.jobdir import JobDir
from vizsla.scriptmode.metrics import MetricMatch
from vizsla.scriptmode.spec import ScriptJobSpec

log = logging.getLogger(__name__)
PROFILE_DIR_ENV = "VIZSLA_PROFILE_DIR"  # the smdebug shim writes TRAIN step records there


class ScriptTracker:
    """One MLflow run for a script job: hyperparameters, every metric match (step = index), tags, files."""

    def __init__(self, spec: ScriptJobSpec, job: JobDir) -> None:
        from vizsla.tracking import MlflowRun

        tracking = spec.tracking
        self.spec, self.job = spec, job
        # A re-run script starts over (scripts have no checkpoint contract): a run of its own, so its metric
        # series do not pile onto the earlier attempt's steps; the earlier run is named in a tag.
        self.run = MlflowRun(tracking.uri, tracking.experiment, tracking.parent_run_id, reuse_run=False)
        self.active = False

    def start(self) -> None:
        previous = _previous_run_id(self.job)
        try:
            run_id = self.run.start(self.job, self.spec.job_name)
            self.run.log_params(dict(self.spec.hyperparameters))
            tags = {"vizsla.kind": "script", "vizsla.entry_point": self.spec.entry_point}
            if previous and previous != run_id:
                tags["vizsla.previous_run_id"] = previous
            self.run.set_tags(tags)
            self.active = True
        except Exception as exc:  # noqa: BLE001 - tracking never fails the job
            log.warning("MLflow tracking is off for this job: %r", exc)

    def info(self) -> dict[str, Any]:
        return self.run.info() if self.active else {}

    def finish(self, result: dict[str, Any], matches: list[MetricMatch], files: list[Path]) -> None:
        from vizsla.tracking.mlflow_run import end_tags

        if not self.active:
            return
        run = self.run
        result["mlflow"] = run.info()
        try:
            for match in matches:
                run.log_metrics({match.name: match.value}, match.index, match.time)
            run.set_tags(end_tags(result["status"], result))
            logged = self._log_model(result)  # the model folder then travels inside the logged model
            run.log_artifacts(self.job, result, with_model=not logged)
            for path in files:
                if path.is_file():
                    run.log_file(path, _artifact_dir(self.job, path))
        except Exception as exc:  # noqa: BLE001
            log.warning("could not record the job in MLflow: %r", exc)
        finally:
            try:
                run.end(result["status"])
            except Exception as exc:  # noqa: BLE001
                log.warning("could not close the MLflow run: %r", exc)

    def _log_model(self, result: dict[str, Any]) -> bool:
        """A Completed job's MLflow model (tracking/script_model.py), recorded in RESULT; whether logged."""
        if result["status"] != "Completed" or not getattr(self.spec.tracking, "log_model", True):
            return False
        from vizsla.tracking.script_model import log_finished_script_model

        return log_finished_script_model(self.run.client, self.run.run_id or "", self.job, self.spec, result)


def _previous_run_id(job: JobDir) -> str | None:
    """The MLflow run of an earlier attempt of this job (tracking.json), if any."""
    import json

    try:
        return json.loads(job.tracking.read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


def _artifact_dir(job: JobDir, path: Path) -> str | None:
    parent = path.resolve().parent.relative_to(job.root.resolve()).as_posix()
    return None if parent == "." else parent


class ScriptProfiler:
    """System metrics of this process and the script's process tree, and the built-in profiler report."""

    def __init__(self, spec: ScriptJobSpec, job: JobDir) -> None:
        self.spec, self.job = spec, job
        self.collector: Any = None
        self.timeline: list[dict[str, Any]] = []
        self.context: dict[str, Any] = {}

    def prepare(self, env: dict[str, str], job_start: float, num_gpus: int) -> None:
        """Clear an earlier run's records, start sampling, and tell the shim where steps go."""
        from vizsla.profiler.collectors.system import SystemCollector
        from vizsla.profiler.data import JOB_FILE, STEPS_FILE, SYSTEM_FILE

        out = self.job.profile
        out.mkdir(parents=True, exist_ok=True)
        for name in (SYSTEM_FILE, STEPS_FILE, JOB_FILE):
            (out / name).unlink(missing_ok=True)
        env[PROFILE_DIR_ENV] = str(out.resolve())
        if self.spec.profile.torch_trace is not None:  # the hook runs torch.profiler in the script
            from vizsla.scriptmode.smdebug_shim.profiling import TRACE_ENV

            env[TRACE_ENV] = self.spec.profile.torch_trace.model_dump_json()
        hps = self.spec.hyperparameters
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        self.context = {
            "job_name": self.spec.job_name,
            "kind": "script",
            "entry_point": self.spec.entry_point,
            "cores": cores,
            "job_start": job_start,
            "num_workers": None,
            "batch_size": hps.get("batch-size", hps.get("batch_size")),
            "epochs": hps.get("epochs"),
            "device_type": "cuda" if num_gpus else "cpu",
        }
        try:
            self.collector = SystemCollector(out / SYSTEM_FILE, self.spec.profile.interval_ms)
            self.collector.start()
        except Exception as exc:  # noqa: BLE001
            log.warning("profiler system sampling is off: %r", exc)
            self.collector = None

    def process_started(self, pid: int) -> None:
        self.context["pid"] = pid
        self.timeline.append({"event": "fit_start", "time": time.time(), "epoch": 0})

    def finish(self, status: str) -> dict[str, Any] | None:
        """Stop sampling, write profile/job.json with the step window, build summary.json and the report."""
        from vizsla.infra.io import read_jsonl
        from vizsla.profiler import build_profile_report, report_path
        from vizsla.profiler.data import JOB_FILE, STEPS_FILE

        if self.collector is not None:
            self.collector.stop()
        end = time.time()
        steps = [
            s for s in read_jsonl(self.job.profile / STEPS_FILE) if isinstance(s.get("time"), int | float)
        ]
        timeline = list(self.timeline)
        if steps:
            # a record's "time" is its forward start; the step began data_s earlier and lasted total_s
            starts = [s["time"] - float(s.get("data_s") or 0.0) for s in steps]
            ends = [b + float(s.get("total_s") or 0.0) for b, s in zip(starts, steps, strict=True)]
            first = min(range(len(steps)), key=starts.__getitem__)
            timeline += [
                {"event": "epoch_start", "time": starts[first], "epoch": 0},
                {"event": "first_step_end", "time": ends[first], "epoch": 0},
                {"event": "train_end", "time": max(ends), "epoch": 0},
            ]
        timeline.append({"event": "fit_end", "time": end, "epoch": 0, "status": status})
        timeline.sort(key=lambda m: m["time"])
        atomic_write_json(
            self.job.profile / JOB_FILE, {"context": {**self.context, "status": status}, "timeline": timeline}
        )
        try:
            summary = build_profile_report(self.job, self.spec.profile, report=self.spec.profile.report)
        except Exception as exc:  # noqa: BLE001 - a report that cannot be built must not fail the job
            log.warning("could not build the profiler report: %r", exc)
            return {"error": repr(exc)}
        triggered = [f["rule"] for f in summary.get("rules", []) if f.get("triggered")]
        report = report_path(self.job)
        return {
            "steps": len(steps),
            "system_samples": len(read_jsonl(self.job.profile / "system.jsonl")),
            "rules_triggered": triggered,
            "report": str(report.resolve()) if report.is_file() else None,
        }
