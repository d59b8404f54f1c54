"""Benchmark: step-time overhead of the training debugger (default collections and interval) vs no debugger.

The same job runs with and without `debug.enabled` (default collections, save_interval 100, and the default
rules when the rule runner is installed), interleaved off/on for several repeats so machine load hits both
alike: efficientnet_lite0 full fine-tune at batch 16 on hymenoptera at 224 px (generated digits when the
photos are absent), stopped after --steps train steps. A step's time is the interval between consecutive
batch_end events inside an epoch (data loading, forward, backward, optimizer, every callback), so evaluation
is left out. Printed: median (and mean) step time of each side, and the overhead ratio on against off.

    python benchmarks/bench_debugger.py [--steps 40] [--repeats 3] [--batch-size 16] [--data DIR] [--quick]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import base_parser, ours_spec, pick_dataset, print_config, print_header, warm_up_imports, work_dir

from vizsla.callbacks import Callback, TrainState

OVERHEAD_TARGET = 0.05  # the issue's bar: <= 5% on step time


class StepTimer(Callback):
    """Intervals between consecutive batch_end events of one epoch; stops the job after `steps` steps."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.intervals: list[float] = []
        self._last: float | None = None

    def epoch_start(self, state: TrainState) -> None:
        self._last = None  # the first step of an epoch would include the evaluation before it

    def batch_end(self, state: TrainState) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.intervals.append(now - self._last)
        self._last = now
        if state.global_step >= self.steps:
            state.request_stop("benchmark step budget reached")


def run_once(data: Path, out: Path, *, debug: bool, steps: int, batch_size: int) -> dict[str, Any]:
    """One training job; its step intervals and which debugger callbacks it ran."""
    from vizsla.jobs import run_job

    spec = ours_spec(
        data,
        out,
        train={"finetune": "full", "batch_size": batch_size, "epochs": 100, "precision": "fp32"},
        model_options={"image_size": 224},
    )
    spec = spec.model_copy(update={"debug": spec.debug.model_copy(update={"enabled": debug})})
    timer = StepTimer(steps)
    result = run_job(spec, callbacks=[timer], progress=False)
    store = out / "debug"
    return {
        "intervals": timer.intervals,
        "status": result.get("status"),
        "rules": (store / "rules.json").is_file(),
        "store_files": len(list((store / "steps").rglob("*.npz"))) if store.is_dir() else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="train steps per run (default 40)")
    parser.add_argument("--repeats", type=int, default=3, help="off/on pairs, interleaved (default 3)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 steps, 1 repeat (not the figure)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 8, 1
    dataset = pick_dataset(args.data)
    print_header("Debugger overhead on step time (full fine-tune)", dataset)
    print_config("run", {"steps": args.steps, "repeats": args.repeats, "batch_size": args.batch_size})
    warm_up_imports()
    steps: dict[str, list[float]] = {"off": [], "on": []}
    with work_dir() as root:
        # an untimed warm-up run: a process's first training pays one-off costs (allocator, kernels, caches)
        run_once(dataset[0], root / "warm-up", debug=False, steps=3, batch_size=args.batch_size)
        for repeat in range(args.repeats):
            for side in ("off", "on"):
                run = run_once(
                    dataset[0],
                    root / f"{side}-{repeat}",
                    debug=side == "on",
                    steps=args.steps,
                    batch_size=args.batch_size,
                )
                steps[side] += run["intervals"]
                median = statistics.median(run["intervals"]) if run["intervals"] else float("nan")
                extra = (
                    f", rules.json {run['rules']}, step files {run['store_files']}" if side == "on" else ""
                )
                print(
                    f"repeat {repeat} {side:3s}: {run['status']}, median step {median:.3f} s{extra}",
                    flush=True,
                )
    off, on = statistics.median(steps["off"]), statistics.median(steps["on"])
    mean_off, mean_on = statistics.fmean(steps["off"]), statistics.fmean(steps["on"])
    overhead = on / off - 1
    print()
    print(
        f"median step time: off {off:.4f} s, on {on:.4f} s ({len(steps['off'])} / {len(steps['on'])} steps)"
    )
    print(f"mean step time:   off {mean_off:.4f} s, on {mean_on:.4f} s (mean ratio {mean_on / mean_off:.3f})")
    print(f"overhead ratio on/off (median): {on / off:.3f}")
    met = overhead <= OVERHEAD_TARGET
    print(
        f"target overhead <= {OVERHEAD_TARGET:.0%}: {'MET' if met else 'MISSED'} (measured {overhead:+.1%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
