"""run_script_job: a user's SageMaker training script in a child process, under the toolkit's contract.

The parent lays out the job directory (SageMaker's /opt/ml), starts the script with the SM_* environment
and `--key value` arguments, streams its stdout and stderr line by line (to the console, train.log and the
metric regexes), stops it on request (SIGTERM, then SIGKILL after a grace period), and writes
output/success or output/failure, metrics.jsonl and result.json as a built-in job does.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vizsla.errors import UserError
from vizsla.infra.io import atomic_write_text
from vizsla.jobdir import JobDir
from vizsla.scriptmode.environment import (
    ScriptCommand,
    ScriptLayout,
    count_gpus,
    resolve_channels,
    resolve_command,
    script_environment,
    write_layout,
)
from vizsla.scriptmode.failure import exit_code, failure_text, signal_name
from vizsla.scriptmode.metrics import MetricMatcher
from vizsla.scriptmode.spec import ScriptJobSpec
from vizsla.scriptmode.streaming import OutputStreams, StopSignals, kill_group

log = logging.getLogger(__name__)

# SageMaker sends SIGTERM and waits 120 s before SIGKILL; locally 10 s is enough to save a checkpoint
# and short enough that Ctrl-C feels responsive.
STOP_GRACE_S = 10.0
FAILURE_REASON_CHARS = 1024  # SageMaker's FailureReason: the first 1024 characters of output/failure
POLL_S = 0.1
STOP_POLL_S = 0.5  # should_stop() and the debugger's rules are asked about twice a second


def run_script_job(
    spec: ScriptJobSpec,
    *,
    progress: bool = True,
    on_metric: Callable[[str, float, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Runs the script to the end; returns the result dict (also written as result.json).

    `on_metric(name, value, index)` is called in this thread for every regex match. When `should_stop()`
    turns True, or this process gets SIGTERM/SIGINT, the script gets SIGTERM (SIGKILL after STOP_GRACE_S)
    and the job ends Stopped. Missing entry point, source dir or channel: UserError before anything runs.
    """
    from dataclasses import replace

    from vizsla.scriptmode.interpreter import has_real_sagemaker, resolve_python

    job = JobDir(Path(spec.output).expanduser().resolve())
    command = with_launcher(resolve_command(spec.entry_point, spec.source_dir, spec.hyperparameters), spec)
    command = replace(command, python=resolve_python(spec.python))
    # The SDK stand-in goes on the path unless the script's interpreter has the real one (a broken
    # --python interpreter is a UserError here, before anything is written)
    sagemaker_shim = not has_real_sagemaker(command.python)
    _check_job_dir(job, resume)
    channels = resolve_channels(spec.channels, progress=progress)
    whole_folder = spec.source_dir is not None  # else: the script's folder, not what lies beside it
    spec = _resolved(spec, job, command)
    run = _ScriptRun(
        spec,
        job,
        command,
        channels,
        progress=progress,
        on_metric=on_metric,
        should_stop=should_stop,
        resume=resume,
        whole_folder=whole_folder,
        sagemaker_shim=sagemaker_shim,
    )
    return run.execute()


def with_launcher(command: ScriptCommand, spec: ScriptJobSpec) -> ScriptCommand:
    """COMMAND run by torchrun when the spec asks for a distribution (the script must be a .py file)."""
    if spec.distribution is None:
        return command
    if command.entry_point.suffix != ".py":
        raise UserError(
            f"entry point {command.entry_point}: a distributed script job runs a .py file under torchrun "
            "(as SageMaker's torch_distributed does)"
        )
    from dataclasses import replace

    from vizsla.training.launch import LaunchOptions, run_id_for, torchrun_options

    dist = spec.distribution
    options = LaunchOptions(
        dist.nproc_per_node, dist.nnodes, dist.node_rank, dist.rdzv_endpoint, dist.max_restarts
    )
    return replace(command, torchrun=torchrun_options(options, run_id_for(spec.job_name)))


def _resolved(spec: ScriptJobSpec, job: JobDir, command: ScriptCommand) -> ScriptJobSpec:
    """The spec as saved in spec.yaml: absolute paths, so the job re-runs from any working directory."""
    from vizsla.data.sources import is_remote

    channels = {
        name: location if is_remote(location) else str(Path(location).expanduser().resolve())
        for name, location in spec.channels.items()
    }
    return spec.model_copy(
        update={
            "output": str(job.root),
            "source_dir": str(command.source_dir),
            "entry_point": command.user_entry_point,
            "channels": channels,
        }
    )


def _check_job_dir(job: JobDir, resume: bool) -> None:
    if not resume and job.exists():
        raise UserError(
            f"{job.root} already holds a job",
            hint=f"re-run it with `vizsla train --resume {job.root}`, or pass --overwrite",
        )
    if resume and not job.exists():
        raise UserError(f"cannot resume {job.root}: no spec.yaml there")


class _ScriptRun:
    """One execution of the script: files, attachments, the child process and the result."""

    def __init__(
        self,
        spec: ScriptJobSpec,
        job: JobDir,
        command: ScriptCommand,
        channels: dict[str, Path],
        *,
        progress: bool,
        on_metric: Callable[[str, float, int], None] | None,
        should_stop: Callable[[], bool] | None,
        resume: bool,
        whole_folder: bool = True,
        sagemaker_shim: bool = True,
    ) -> None:
        self.spec, self.job, self.command, self.channels = spec, job, command, channels
        self.whole_folder, self.sagemaker_shim = whole_folder, sagemaker_shim
        self.user_source_dir = command.source_dir  # the user's folder; the script runs in a copy (<job>/code)
        self.layout = ScriptLayout(job.root)
        self.progress, self.resume = progress, resume
        self.on_metric, self.should_stop = on_metric, should_stop
        self.matcher = MetricMatcher(list(spec.metric_definitions))
        self.streams: OutputStreams | None = None
        self.stop_reason: str | None = None
        self.extras: dict[str, Any] = {}
        self.debugger_ok = True
        self.warnings: list[str] = []  # result.json "warnings": what the user should look at
        self.code_files: set[str] = set()
        self.hook_config: Path | None = None

    # setup -------------------------------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        start = datetime.now(UTC)
        job_start = time.time()
        self._prepare_files()
        self.job.write_result(self._result(start, status="InProgress"))
        tracker, profiler, debugger = self._attachments()
        try:
            env = self._environment(job_start, profiler, debugger)
            if tracker is not None:
                tracker.start()
            rc = self._install_requirements()
            if rc is None:
                rc = self._run_child(env, profiler, debugger)
            result = self._finish(start, self._status(rc), rc)
        finally:
            if self.streams is not None:
                self.streams.close()
        self._finish_attachments(result, tracker, profiler, debugger)
        self.job.write_result(result)
        return result

    def _prepare_files(self) -> None:
        layout = self.layout
        self.job.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.job.spec, self.spec.to_job_yaml())
        write_layout(layout, self.channels, self.spec.hyperparameters)
        for path in (layout.failure, layout.success):
            path.unlink(missing_ok=True)  # a re-run decides afresh; a script may write its own failure
        self.streams = OutputStreams(
            self.job.log, self.job.metrics, self.matcher, progress=self.progress, append_log=self.resume
        )
        if self.resume:
            self._note(f"re-running {self.command.user_entry_point} (scripts have no checkpoint contract)")
        self._stage_code()

    def _stage_code(self) -> None:
        """Run the script in the job's own copy of the source dir (SageMaker's /opt/ml/code)."""
        from vizsla.scriptmode.staging import LARGE_COPY_BYTES, list_files, stage_source

        code_dir = self.layout.code_dir
        self.command, copied = stage_source(
            self.command, code_dir, skip=(self.job.root,), whole_folder=self.whole_folder
        )
        self.code_files = list_files(code_dir)
        if copied > LARGE_COPY_BYTES:
            self._warn(
                f"copied {copied / 2**20:.0f} MB of {self.user_source_dir} into {code_dir} (SageMaker "
                "uploads the whole source dir too): pass --source-dir with just the code, and the data "
                "as --channel"
            )

    def _attachments(self) -> tuple[Any, Any, Any]:
        """The tracker, profiler and debug session the spec asks for (the composition root decides)."""
        from vizsla.jobs import script_attachments

        return script_attachments(self.spec, self.job)

    def _default_hook_config(self, env: dict[str, str]) -> None:
        """debughookconfig.json when the job asks for no debugging, as SageMaker's estimator does.

        sagemaker-python-sdk src/sagemaker/estimator.py `_validate_and_set_debugger_configs`: an estimator
        without debugger_hook_config gets DebuggerHookConfig(s3_output_path=output_path), whose request is
        {"S3OutputPath": ...} only (src/sagemaker/debugger/debugger.py `_to_request_dict`), so
        `smd.Hook.create_from_json_file()` works and saves smdebug's defaults (losses, every 500 steps).
        `debugger_hook_config=False` (here debug_hook: false, --no-debug-hook) writes none. A tuning job's
        trials get none: HyperParameterTrainingJobDefinition has no DebugHookConfig field.
        """
        from vizsla.scriptmode.debugging import write_default_hook_config

        try:
            self.hook_config = write_default_hook_config(
                env, self.job.root, self.job.root / self.spec.debug.out_dir
            )
        except OSError as exc:
            self._warn(f"could not write the default debug hook config: {exc}")

    def _environment(self, job_start: float, profiler: Any, debugger: Any) -> dict[str, str]:
        gpus = count_gpus()
        env = script_environment(
            self.layout, self.command, self.channels, self.spec.hyperparameters, self.spec.job_name,
            num_gpus=gpus, sagemaker_shim=self.sagemaker_shim,
        )  # fmt: skip
        if debugger is None and not self.spec.debug.enabled and self.spec.debug_hook is not False:
            self._default_hook_config(env)
        if profiler is not None:
            profiler.prepare(env, job_start, gpus)
        if debugger is not None:
            try:
                debugger.prepare(env)
                debugger.start()
            except Exception as exc:  # noqa: BLE001 - the debugger never fails the job
                self._note(f"debugger is off for this job: {exc!r}", warning=True)
                self.extras["debugger"] = {"error": repr(exc)}
                self.debugger_ok = False
        env.update(self.spec.environment)
        return env

    def _install_requirements(self) -> int | None:
        """Check (and with install_requirements, pip install) requirements.txt; a pip failure ends the job."""
        from vizsla.scriptmode.requirements import (
            check_requirements,
            install_command,
            install_requirements,
            requirements_file,
        )

        path = requirements_file(self.command.source_dir)
        if path is None:
            return None
        if self.spec.install_requirements:
            self._note(f"pip install -r {path}")
            assert self.streams is not None
            streams = self.streams
            rc, tail = install_requirements(
                path,
                self.command.source_dir,
                lambda line: streams.write_line(line, sys.stdout),
                self.command.python,
            )
            report = check_requirements(path)
            report["installed"] = rc == 0
            self.extras["requirements"] = report
            if rc != 0:
                self.extras["failure"] = failure_text(
                    rc, tail, install_command(path, self.command.python), "InstallRequirementsError"
                )
                return rc
            return None
        from vizsla.scriptmode.interpreter import same_interpreter

        if not same_interpreter(self.command.python):  # checked against Vizsla's packages: meaningless
            self._note(f"requirements.txt not checked for {self.command.python} (--install-requirements)")
            return None
        report = check_requirements(path)
        self.extras["requirements"] = report
        for problem in report["unsatisfied"]:
            self._note(f"requirements.txt: {problem['requirement']}: {problem['reason']}", warning=True)
        if report["unsatisfied"]:
            self._note("install them with --install-requirements (SageMaker always pip-installs them)")
        return None

    # the child ---------------------------------------------------------------------------------------
    def _run_child(self, env: dict[str, str], profiler: Any, debugger: Any) -> int:
        argv = self.command.argv
        assert self.streams is not None
        try:
            process = subprocess.Popen(
                argv, cwd=self.command.source_dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:  # e.g. an executable without a shebang: the script could not start
            self.extras["failure"] = failure_text(1, f"{type(exc).__name__}: {exc}", argv)
            self._note(f"cannot start {argv[0]}: {exc}", warning=True)
            return 1
        if profiler is not None:
            profiler.process_started(process.pid)
        assert process.stdout is not None and process.stderr is not None
        self.streams.start(process.stdout, process.stderr)
        try:
            with StopSignals(self._request_stop):
                rc = self._supervise(process, debugger)
        finally:
            if (
                process.poll() is None
            ):  # an exception here (a bug, KeyboardInterrupt): never orphan the script
                kill_group(process.pid, signal.SIGKILL)
                process.wait()
        self.streams.join(process.pid)
        self.streams.dispatch(self.on_metric)
        return rc

    def _supervise(self, process: subprocess.Popen[bytes], debugger: Any) -> int:
        """Wait for the script, dispatching metric matches and polling the stop conditions."""
        assert self.streams is not None
        started = time.monotonic()
        next_poll = started
        kill_at: float | None = None
        while True:
            rc = process.poll()
            self.streams.dispatch(self.on_metric, timeout=POLL_S if rc is None else 0)
            if rc is not None:
                return rc
            now = time.monotonic()
            if self.stop_reason is None and now >= next_poll:
                next_poll = now + STOP_POLL_S
                self._poll_stop(now - started, debugger)
            if self.stop_reason is not None and kill_at is None:
                self._note(f"stopping the script: {self.stop_reason}")
                kill_group(process.pid, signal.SIGTERM)
                kill_at = now + STOP_GRACE_S
            elif kill_at is not None and now >= kill_at:
                self._note(f"the script ignored SIGTERM for {STOP_GRACE_S:g} s: SIGKILL")
                kill_group(process.pid, signal.SIGKILL)
                kill_at = float("inf")

    def _poll_stop(self, elapsed: float, debugger: Any) -> None:
        if self.spec.max_run_s is not None and elapsed > self.spec.max_run_s:
            self.stop_reason = f"MaxRuntimeExceeded: ran longer than max_run_s = {self.spec.max_run_s:g} s"
            return
        if self.should_stop is not None:
            try:
                if self.should_stop():
                    self.stop_reason = "stop requested"
                    return
            except Exception as exc:  # noqa: BLE001 - a broken callback must not leave the script unattended
                log.warning("should_stop() raised %r; ignored", exc)
        if debugger is not None and self.debugger_ok:
            try:
                reason = debugger.should_stop()
            except Exception as exc:  # noqa: BLE001
                log.warning("debugger should_stop() raised %r; ignored", exc)
                reason = None
            if reason:
                self.stop_reason = f"debugger rule: {reason}"

    def _request_stop(self, signum: int) -> None:
        if self.stop_reason is None:
            self.stop_reason = f"vizsla received {signal.Signals(signum).name}"

    # the end -----------------------------------------------------------------------------------------
    def _status(self, rc: int) -> str:
        if self.stop_reason is not None:
            return "Stopped"
        return "Completed" if rc == 0 else "Failed"

    def _finish(self, start: datetime, status: str, rc: int) -> dict[str, Any]:
        layout = self.layout
        assert self.streams is not None
        failure: str | None = None
        if status == "Completed":
            atomic_write_text(layout.success, "")
        elif status == "Failed":
            if not layout.failure.is_file():  # STK keeps a failure file the script wrote itself
                text = self.extras.pop("failure", None) or failure_text(
                    rc, self.streams.error_message(), self.command.argv
                )
                atomic_write_text(layout.failure, text)
            failure = layout.failure.read_text(encoding="utf-8", errors="replace")[:FAILURE_REASON_CHARS]
        self.extras.pop("failure", None)
        if status == "Failed":
            from vizsla.scriptmode.interpreter import diagnose_import_error

            hint = diagnose_import_error(list(self.streams.stderr_tail), self.command.python)
            if hint:
                self._warn(hint)
        if status == "Completed":
            self._check_model_saved()
        unmatched = self.matcher.unmatched()
        for name in unmatched:
            self._note(
                f"metric definition {name!r} never matched a line of the script's output", warning=True
            )
        stopped = f": {self.stop_reason}" if self.stop_reason else ""
        self._note(f"{status} (exit code {exit_code(rc)}){stopped}")
        result = self._result(start, status=status, rc=rc)
        result.update({"failure_reason": failure, "unmatched_metric_definitions": unmatched})
        return result

    def _check_model_saved(self) -> None:
        """Warn when the script left SM_MODEL_DIR empty, naming what it wrote into its working directory."""
        from vizsla.scriptmode.staging import list_files

        model_dir = self.layout.model_dir
        if model_dir.is_dir() and any(model_dir.iterdir()):
            return
        written = sorted(list_files(self.layout.code_dir) - self.code_files)
        where = ""
        if written:
            shown = ", ".join(written[:5]) + (f" and {len(written) - 5} more" if len(written) > 5 else "")
            where = f"; it wrote {shown} into its working directory {self.layout.code_dir} instead"
        self._warn(
            f"the script saved no model into SM_MODEL_DIR ({model_dir}){where}: SageMaker keeps only "
            "model/ (as model.tar.gz), and serving and `vizsla tune best` read it from there; save to "
            "os.environ['SM_MODEL_DIR'] (args.model_dir)"
        )

    def _result(self, start: datetime, *, status: str, rc: int | None = None) -> dict[str, Any]:
        now = datetime.now(UTC)
        model_dir = self.layout.model_dir
        saved = model_dir.is_dir() and any(model_dir.iterdir())
        return {
            "job_name": self.spec.job_name,
            "job_dir": str(self.job.root),
            "kind": "script",
            "status": status,
            "failure_reason": None,
            "stop_reason": self.stop_reason,
            "exit_code": None if rc is None else exit_code(rc),
            "signal": None if rc is None else signal_name(rc),
            "start_time": start.isoformat(timespec="seconds"),
            "end_time": None if status == "InProgress" else now.isoformat(timespec="seconds"),
            "duration_s": round((now - start).total_seconds(), 3),
            "entry_point": self.command.user_entry_point,
            "source_dir": str(self.user_source_dir),
            "code_dir": str(self.layout.code_dir),
            "python": self.command.python,
            "debug_hook_config": str(self.hook_config) if self.hook_config else None,
            "warnings": list(self.warnings),
            "command": self.command.argv,
            "hyperparameters": dict(self.spec.hyperparameters),
            "channels": {name: str(path) for name, path in self.channels.items()},
            "metrics": dict(self.matcher.last),
            "metric_series_counts": dict(self.matcher.counts),
            "unmatched_metric_definitions": [],
            "metric_warnings": list(self.matcher.warnings),
            "stderr_tail": list(self.streams.stderr_tail) if self.streams else [],
            "best_model_path": str(model_dir) if saved else None,
            "requirements": self.extras.get("requirements"),
            "sagemaker": dict(self.spec.sagemaker),
        }

    def _finish_attachments(self, result: dict[str, Any], tracker: Any, profiler: Any, debugger: Any) -> None:
        status = result["status"]
        if debugger is not None and self.debugger_ok:
            try:
                result["debugger"] = debugger.finish(status)
            except Exception as exc:  # noqa: BLE001
                log.warning("debugger finish failed: %r", exc)
                result["debugger"] = {"error": repr(exc)}
        elif "debugger" in self.extras:
            result["debugger"] = self.extras["debugger"]
        if profiler is not None:
            result["profiler"] = profiler.finish(status)
        if tracker is not None:
            matches = self.streams.matches if self.streams else []
            tracker.finish(result, matches, [self.job.log, self.layout.failure, self.layout.success])

    def _warn(self, message: str) -> None:
        """A warning for the log, train.log and result.json's `warnings`."""
        self.warnings.append(message)
        self._note(message, warning=True)

    def _note(self, message: str, *, warning: bool = False) -> None:
        """Vizsla's own message: to the log, and marked in train.log."""
        (log.warning if warning else log.info)(message)
        if self.streams is not None:
            self.streams.note(f"warning: {message}" if warning else message)
