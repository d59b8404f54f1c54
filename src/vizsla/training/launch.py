"""`vizsla train --nproc-per-node N`: run a job's processes under torchrun's elastic agent.

No launcher of our own: the arguments become torchrun's (`torch.distributed.run`), which starts the
processes, runs the c10d rendezvous across machines, restarts the group after a failure (--max-restarts)
and tears it down when a process dies. Each process runs `python -m vizsla train` on the same spec, and
finds its rank in the standard variables (see distributed.py).
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vizsla.errors import UserError
from vizsla.jobdir import JobDir
from vizsla.spec import JobSpec

log = logging.getLogger("vizsla.train")

TERMINAL = ("Completed", "Failed", "Stopped")
LAUNCHED_BY_VIZSLA = "VIZSLA_LAUNCHER_PID"  # the workers leave the summary to this process


@dataclass(frozen=True)
class LaunchOptions:
    """torchrun's settings, as the CLI takes them."""

    nproc_per_node: int
    nnodes: int = 1
    node_rank: int | None = None
    rdzv_endpoint: str | None = None
    max_restarts: int = 0
    monitor_interval_s: float = 0.5

    def check(self) -> None:
        if self.nproc_per_node < 1:
            raise UserError(f"--nproc-per-node must be >= 1, got {self.nproc_per_node}")
        if self.nnodes < 1:
            raise UserError(f"--nnodes must be >= 1, got {self.nnodes}")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise UserError(
                f"--nnodes {self.nnodes} needs --rdzv-endpoint HOST:PORT (the same on every machine)"
            )
        if self.max_restarts < 0:
            raise UserError(f"--max-restarts must be >= 0, got {self.max_restarts}")


def torchrun_arguments(
    options: LaunchOptions, run_id: str, worker_args: list[str], module: str = "vizsla"
) -> list[str]:
    """The torchrun command line (without `torchrun`) that runs `python -m MODULE WORKER_ARGS`."""
    return [*torchrun_options(options, run_id), "-m", module, *worker_args]


def torchrun_options(options: LaunchOptions, run_id: str) -> list[str]:
    """torchrun's own options (what comes before the script or `-m module`)."""
    args = [
        f"--nproc-per-node={options.nproc_per_node}",
        f"--nnodes={options.nnodes}",
        f"--max-restarts={options.max_restarts}",
        f"--monitor-interval={options.monitor_interval_s}",
    ]
    if options.rdzv_endpoint:
        args += ["--rdzv-backend=c10d", f"--rdzv-endpoint={options.rdzv_endpoint}", f"--rdzv-id={run_id}"]
        if options.node_rank is not None:
            args.append(f"--node-rank={options.node_rank}")
    else:  # one machine: a private c10d store on a free local port
        args.append("--standalone")
    return args


def run_id_for(job_name: str) -> str:
    """The rendezvous id: every machine's launcher derives the same one from the same job."""
    return "vizsla-" + "".join(c if c.isalnum() else "-" for c in job_name)[:60]


def launch(
    spec: JobSpec,
    options: LaunchOptions,
    *,
    resume: bool,
    quiet: bool,
    worker: tuple[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Run SPEC with torchrun and return its result.json (written by rank 0, or here when it could not).

    Each process runs `python -m vizsla train` on SPEC, or WORKER = (module, arguments): a module that
    runs the same job with callbacks of its own (a tuning trial's reporter, tuning/distributed_trial.py).
    """
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    options.check()
    job_dir = JobDir(spec.output)
    with tempfile.TemporaryDirectory(prefix="vizsla-launch-") as folder:
        if resume:
            worker_args = ["train", "--resume", str(job_dir.root)]
        else:
            spec_file = Path(folder) / "spec.yaml"
            spec_file.write_text(spec.to_yaml(), encoding="utf-8")
            worker_args = ["train", "--config", str(spec_file)]
        if quiet:
            worker_args.append("--quiet")
        module = "vizsla"
        if worker is not None:
            module, worker_args = worker
        argv = torchrun_arguments(options, run_id_for(spec.job_name), worker_args, module)
        log.info("torchrun %s", " ".join(argv))
        parsed = torchrun.get_args_parser().parse_args(argv)
        failure: str | None = None
        os.environ[LAUNCHED_BY_VIZSLA] = str(os.getpid())  # inherited by the workers
        if "OMP_NUM_THREADS" not in os.environ:  # else torchrun sets 1 and warns; runtime.py sets threads
            from vizsla.infra.hardware import available_cores

            os.environ["OMP_NUM_THREADS"] = str(max(1, available_cores() // options.nproc_per_node))
        try:
            torchrun.run(parsed)
        except ChildFailedError as exc:
            failure = _root_cause(exc)
        except SignalException as exc:  # SIGTERM/SIGINT here: torchrun passed it on to the processes
            failure = f"stopped by {signal.Signals(exc.sigval).name}"
        finally:
            os.environ.pop(LAUNCHED_BY_VIZSLA, None)
    result = job_dir.read_result() or {}
    is_first_node = options.node_rank in (None, 0)
    if failure is not None and result.get("status") not in TERMINAL and is_first_node:
        # Rank 0 itself was killed before it could write: record the failure here.
        result = _failed_result(spec, job_dir, failure, result)
        job_dir.write_result(result)
    if failure is not None and not result:
        result = {"status": "Failed", "failure_reason": failure, "job_dir": str(job_dir.root)}
    return result


def _root_cause(exc: Any) -> str:
    """torchrun's first failure: the rank, its exit code or signal, and its message when it left one."""
    try:
        rank, failure = exc.get_first_failure()
    except Exception:  # noqa: BLE001 - older or changed torch: its own text
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "a worker process failed"
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    exitcode = getattr(failure, "exitcode", None)
    detail = (
        f"signal {failure.signal_name()}"
        if exitcode is not None and exitcode < 0
        else f"exit code {exitcode}"
    )
    text = f"rank {rank} failed ({detail})"
    return f"{text}: {message}" if message and "To enable traceback" not in str(message) else text


def _failed_result(spec: JobSpec, job_dir: JobDir, failure: str, previous: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return {
        **previous,
        "job_name": spec.job_name,
        "job_dir": str(job_dir.root.resolve()),
        "status": "Failed",
        "failure_reason": failure,
        "end_time": now,
        "launcher_pid": os.getpid(),
    }
