"""Benchmark: overhead of default profiling (system metrics + step and job phases, no torch.profiler window).

The same small training job runs with profiling off and on, alternating (off/on, then on/off, ...), and a
timing callback present in both records the train-loop time of every epoch (epoch_start -> last
batch_end), so setup, evaluation and the end-of-job report are outside the timing. The figure is the
median over runs of the mean step time with profiling, over the same without. The report and rule
evaluation at the end of a profiled job are timed separately (one-off, not per step), and the step-phase
callbacks are also timed alone over many fake steps (a load-independent per-step cost).

    python benchmarks/bench_profiler.py [--repeats 3] [--epochs 2] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import print_config, print_header, warm_up_imports, work_dir

TARGET_OVERHEAD = 0.03  # the issue: default profiling costs <= 3 % of step time


def parse_args(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs (off+on), order alternating")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=48, help="train images a class (3 classes)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--interval-ms", type=int, default=500, help="system sampling interval (default 500)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1: steady on a shared machine; 0: torch's default)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, 1 epoch, 16 a class")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.epochs, args.per_class = 1, 1, 16
    return args


class LoopTimer:
    """Train-loop seconds and step counts per epoch (a plain callback present in both arms)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.steps: list[int] = []
        self._start = self._last = 0.0
        self._count = 0

    def epoch_start(self, state: Any) -> None:
        self._start, self._count = time.perf_counter(), 0

    def batch_end(self, state: Any) -> None:
        self._last, self._count = time.perf_counter(), self._count + 1

    def epoch_end(self, state: Any) -> None:
        self.seconds.append(self._last - self._start)
        self.steps.append(self._count)

    def __getattr__(self, name: str) -> Any:  # the other events: nothing to do
        return lambda state: None


def run_once(data: Path, out: Path, args: Any, profiled: bool) -> tuple[float, float]:
    """One job; returns (mean seconds per train step, seconds of the end-of-job report)."""
    from vizsla.jobs import run_job
    from vizsla.profiler import ProfileSpec, build_profile_report, create_profile_callbacks
    from vizsla.spec import build_spec
    from vizsla.testing.jobs import tiny_spec_dict

    raw = tiny_spec_dict(data, out, epochs=args.epochs, batch_size=args.batch_size)
    raw["model"] = {"name": args.model, "weights": "none", "image_size": args.image_size}
    raw["train"]["precision"] = "auto"
    spec = build_spec(raw)
    timer = LoopTimer()
    profile = ProfileSpec(enabled=profiled, interval_ms=args.interval_ms, report=False)
    run_job(spec, callbacks=[timer, *create_profile_callbacks(profile, out)], progress=False)
    per_step = sum(timer.seconds) / sum(timer.steps)  # mean: rare sampling hits count
    report_s = 0.0
    if profiled:
        started = time.perf_counter()
        build_profile_report(out, profile)
        report_s = time.perf_counter() - started
    return per_step, report_s


def callback_cost(steps: int = 20_000) -> float:
    """Microseconds per step of the step-phase and job-phase callbacks alone (4 events a step)."""
    import tempfile

    from vizsla.callbacks import TrainState
    from vizsla.profiler.collectors import JobPhaseCollector, StepPhaseCollector

    with tempfile.TemporaryDirectory() as tmp:
        step_cb = StepPhaseCollector(Path(tmp) / "steps.jsonl")
        job_cb = JobPhaseCollector(Path(tmp) / "job.json")
        state = TrainState(spec=None, job_dir=None)
        step_cb.epoch_start(state)
        started = time.perf_counter()
        for i in range(steps):
            for cb in (step_cb, job_cb):
                cb.batch_start(state)
                cb.after_forward(state)
                cb.after_backward(state)
            state.global_step = i + 1
            step_cb.batch_end(state)
            job_cb.batch_end(state)
        elapsed = time.perf_counter() - started
        step_cb.epoch_end(state)
    return 1e6 * elapsed / steps


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print_header("Profiler overhead: profiled vs unprofiled training job")
    print_config("config", {k: v for k, v in vars(args).items() if k != "quick"})
    warm_up_imports()
    import torch

    from vizsla.testing.images import make_image_folder

    if args.threads:
        torch.set_num_threads(args.threads)
    off, on, reports = [], [], []
    with work_dir("vizsla-bench-profiler-") as root:
        data = make_image_folder(
            root / "data", classes=("a", "b", "c"), per_class=args.per_class, size=(160, 120), seed=0
        )
        run_once(data, root / "warm", args, profiled=False)  # first-run costs off the clock
        for repeat in range(args.repeats):
            order = (False, True) if repeat % 2 == 0 else (True, False)
            for profiled in order:
                per_step, report_s = run_once(data, root / f"run-{repeat}-{int(profiled)}", args, profiled)
                (on if profiled else off).append(per_step)
                if profiled:
                    reports.append(report_s)
                state = "on " if profiled else "off"
                print(f"repeat {repeat + 1}: profiling {state} {1000 * per_step:8.2f} ms/step", flush=True)
    base, prof = statistics.median(off), statistics.median(on)
    ratio = prof / base
    print()
    print(f"median step time, profiling off: {1000 * base:.2f} ms ({len(off)} runs)")
    print(f"median step time, profiling on:  {1000 * prof:.2f} ms ({len(on)} runs)")
    print(f"ratio on/off: {ratio:.4f} (overhead {100 * (ratio - 1):+.2f}% of step time)")
    cost = callback_cost()
    print(
        f"step-phase + job-phase callbacks alone: {cost:.1f} us per step "
        f"({100 * cost / 1e6 / base:.3f}% of the unprofiled step)"
    )
    print(f"end-of-job summary + rules + HTML report: {statistics.median(reports):.2f} s (once per job)")
    met = ratio - 1 <= TARGET_OVERHEAD
    print(
        f"target profiling overhead <= {100 * TARGET_OVERHEAD:g}%: {'MET' if met else 'MISSED'} "
        f"(measured {100 * (ratio - 1):+.2f}%)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
