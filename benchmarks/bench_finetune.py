"""Benchmark 3: full fine-tune images/s, ours (auto runtime: channels_last, bf16 where faster) vs baseline.

Ours is `vizsla.jobs.run_job` with finetune=full, tracking off and every runtime setting on "auto". The
baseline is benchmarks/baseline.py: the tutorial loop, fp32, NCHW, eager, torchvision transforms, two loader
workers. Both train the same network from the same pretrained weights with the same optimizer (AdamW, head
LR and backbone LR, cosine per step), batch size and epochs. Train images/s counts the training phase only
(from the first batch's start to the last batch's end of each epoch; evaluation is timed apart), so the ratio
compares the training loops; wall time and accuracy are printed too, so speed never hides a loss of accuracy.
`--variant` adds runs of ours with one setting forced (e.g. fp32 NCHW: our loop without the fast paths).

    python benchmarks/bench_finetune.py [--epochs 3] [--repeats 1] [--variant fp32-nchw ...] [--data DIR]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

from baseline import BaselineConfig, BaselineResult, run_baseline
from common import (
    Row,
    Timer,
    base_parser,
    check_target,
    fresh_cache_dir,
    ours_spec,
    pick_dataset,
    print_config,
    print_header,
    print_table,
    warm_up_imports,
    work_dir,
)

from vizsla.callbacks import Callback, TrainState

SPEEDUP_TARGET = 1.3  # the bar: full fine-tune images/s on this CPU, ours / baseline
ACCURACY_TOLERANCE = 0.02  # ours may not be more than 2 points below (153 valid images: 1 image = 0.65 point)
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32-nchw": {"precision": "fp32", "channels_last": False},
    "fp32-cl": {"precision": "fp32", "channels_last": True},
    "bf16-cl": {"precision": "bf16", "channels_last": True},
    "compile": {"compile": True},
}


class TrainPhaseTimer(Callback):
    """Seconds and images of the training phase of each epoch: epoch start to its last batch's end."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.images = 0
        self.compiled = False
        self._epoch_start = self._last_batch_end = 0.0

    def fit_start(self, state: TrainState) -> None:
        self.compiled = getattr(state.model, "_compiled_call_impl", None) is not None

    def epoch_start(self, state: TrainState) -> None:
        self._epoch_start = self._last_batch_end = time.perf_counter()

    def batch_end(self, state: TrainState) -> None:
        self._last_batch_end = time.perf_counter()
        self.images += state.batch_size

    def epoch_end(self, state: TrainState) -> None:
        self.seconds += self._last_batch_end - self._epoch_start

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs on both sides (default 3)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--lr", type=float, default=1e-3, help="head LR on both sides (default 1e-3)")
    parser.add_argument("--backbone-lr-scale", type=float, default=0.1,
                        help="backbone LR = lr x this, on both sides (default 0.1)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run both sides this many times, alternating, and report medians")
    parser.add_argument("--variant", action="append", default=[], choices=sorted(VARIANTS),
                        help="also run ours with these settings forced (repeatable)")
    return parser.parse_args(argv)


def ours_train_config(args: Any, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"finetune": "full", "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "backbone_lr_scale": args.backbone_lr_scale, "seed": 0, **(overrides or {})}


def baseline_config(args: Any) -> BaselineConfig:
    return BaselineConfig(model=args.model, mode="full", epochs=args.epochs, batch_size=args.batch_size,
                          lr=args.lr, backbone_lr_scale=args.backbone_lr_scale, num_workers=2, seed=0)


def run_ours(root: Path, args: Any, out: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """One full fine-tune job of ours; returns wall time, train-phase images/s, runtime and accuracies."""
    from vizsla.jobs import run_job

    spec = ours_spec(root, out, model=args.model, train=ours_train_config(args, overrides))
    timer = TrainPhaseTimer()
    with fresh_cache_dir(), Timer() as wall:
        result = run_job(spec, callbacks=[timer], progress=False)
    if result.get("status") != "Completed":
        raise SystemExit(f"our job ended {result.get('status')}: {result.get('failure_reason')}")
    return {"wall_s": wall.seconds, "train_s": timer.seconds, "images_per_s": timer.images_per_s,
            "test_accuracy": float(result["metrics"]["test_accuracy"]),
            "valid_accuracy": float(result["metrics"]["valid_accuracy"]),
            "test_source": result.get("test_source"),
            "runtime": {**result.get("runtime", {}), "compiled": timer.compiled}}


def _print_ours(label: str, run: dict[str, Any]) -> None:
    print(f"{label}: wall {run['wall_s']:.1f} s, train {run['train_s']:.1f} s at {run['images_per_s']:.2f} "
          f"images/s, test accuracy {100 * run['test_accuracy']:.2f}% (on {run['test_source']}), "
          f"runtime {run['runtime']}", flush=True)


def _print_baseline(base: BaselineResult) -> None:
    print(f"baseline: wall {base.wall_s:.1f} s, train {base.train_s:.1f} s at {base.images_per_s:.2f} "
          f"images/s, test accuracy {100 * base.test_accuracy:.2f}% (on {base.test_split})", flush=True)


def measure(root: Path, args: Any) -> tuple[dict[str, list[dict]], list[BaselineResult]]:
    """Alternate runs: baseline, ours, then each variant of ours, REPEATS times."""
    ours: dict[str, list[dict]] = {name: [] for name in ["auto", *args.variant]}
    bases: list[BaselineResult] = []
    for repeat in range(args.repeats):
        bases.append(run_baseline(root, baseline_config(args)))
        _print_baseline(bases[-1])
        for name in ours:
            with work_dir() as out:
                ours[name].append(run_ours(root, args, out / "job", VARIANTS.get(name)))
            _print_ours(f"ours [{name}] (run {repeat + 1})", ours[name][-1])
    return ours, bases


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def report(ours: dict[str, list[dict]], bases: list[BaselineResult], args: Any) -> bool:
    """Side-by-side table (medians over repeats) and whether the issue's target is met."""
    base_ips = statistics.median(b.images_per_s for b in bases)
    base_acc = statistics.median(b.test_accuracy for b in bases)
    runs = ours["auto"]
    rows = [
        Row("train images/s (training phase)", _median(runs, "images_per_s"), base_ips, "images/s", "speed"),
        Row("wall time, whole job", _median(runs, "wall_s"), statistics.median(b.wall_s for b in bases),
            "s", "time"),
        Row("test accuracy", _median(runs, "test_accuracy"), base_acc, kind="accuracy"),
    ]
    for name in args.variant:
        rows.append(Row(f"[{name}] train images/s", _median(ours[name], "images_per_s"), base_ips,
                        "images/s", "speed"))
        rows.append(Row(f"[{name}] test accuracy", _median(ours[name], "test_accuracy"), base_acc,
                        kind="accuracy"))
    title = f"Full fine-tune of {args.model}, {args.epochs} epochs, median of {args.repeats} run(s)"
    print_table(title, rows)
    speed_ok = check_target("train images/s, ours/baseline", rows[0].ratio, SPEEDUP_TARGET)
    ours_acc = rows[2].ours
    acc_ok = ours_acc >= base_acc - ACCURACY_TOLERANCE
    print(f"accuracy: ours {100 * ours_acc:.2f}% vs baseline {100 * base_acc:.2f}% "
          f"({100 * (ours_acc - base_acc):+.2f} points): {'MET' if acc_ok else 'MISSED'} "
          f"(ours must not be more than {100 * ACCURACY_TOLERANCE:.0f} points below)", flush=True)
    return speed_ok and acc_ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dataset = pick_dataset(args.data)
    print_header("Benchmark 3: full fine-tune, ours (auto runtime) vs tutorial baseline", dataset)
    warm_up_imports()
    print_config("ours", {"model": args.model, **ours_train_config(args), "runtime": "auto",
                          "tracking": "off"})
    print_config("baseline", {**baseline_config(args).__dict__, "transforms": "tutorial",
                              "precision": "fp32", "memory format": "NCHW", "execution": "eager"})
    ours, bases = measure(dataset[0], args)
    report(ours, bases, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
