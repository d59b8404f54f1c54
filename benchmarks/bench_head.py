"""Benchmark 1: head-only training (frozen pretrained backbone + a new head), ours vs the tutorial baseline.

Ours is `vizsla.jobs.run_job` with finetune=head and the feature cache on (its default, "auto"), in a
fresh empty cache folder, so the cache build (and data validation) is inside the timing. The baseline is
benchmarks/baseline.py: the backbone runs on every image of every epoch, fp32, torchvision transforms.
Both sides train the same network from the same pretrained weights for the same number of epochs and batch
size; MLflow tracking is off on our side (the baseline has none). Torch, timm and torchvision are imported
before any timing, so neither side pays their import.

    python benchmarks/bench_head.py [--epochs 10] [--views 1] [--augment] [--repeats 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from baseline import BaselineConfig, BaselineResult, run_baseline
from common import (
    Row,
    Timer,
    base_parser,
    cache_status,
    cache_summary,
    check_accuracy,
    check_target,
    flips_ok,
    fresh_cache_dir,
    ours_spec,
    pick_dataset,
    print_config,
    print_header,
    print_table,
    warm_up_imports,
    work_dir,
)

SPEEDUP_TARGET = 20.0  # the bar for 10 epochs on hymenoptera, cache build included
ACCURACY_TOLERANCE = 0.01  # "equal test accuracy (within 1 point)"


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs on both sides (default 10)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--lr", type=float, default=1e-3, help="ours' head LR (default 1e-3)")
    parser.add_argument("--baseline-lr", type=float, default=1e-3, help="the baseline's LR (default 1e-3)")
    parser.add_argument("--views", type=int, default=1,
                        help="ours: augmented views cached per train image (train.feature_views)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False,
                        help="ours: augment the train split (cached as --views views); off: one center view")
    parser.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                        help="ours: train.extract_backend (default auto, the product's choice)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="run both sides this many times, alternating, and report medians (default 3)")
    parser.add_argument("--skip-warm", action="store_true", help="skip the extra warm-cache run of ours")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch, 1 repeat, no warm run")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.repeats, args.skip_warm = 1, 1, True
    return args


def ours_train_config(args: Any) -> dict[str, Any]:
    return {"finetune": "head", "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "feature_cache": "auto", "feature_views": args.views, "extract_backend": args.backend, "seed": 0}


def baseline_config(args: Any) -> BaselineConfig:
    return BaselineConfig(model=args.model, mode="head", epochs=args.epochs, batch_size=args.batch_size,
                          lr=args.baseline_lr, hflip=args.hflip, num_workers=2, seed=0)


def run_ours(root: Path, args: Any, out: Path, cache_root: Path) -> dict[str, Any]:
    """One job of ours into OUT using the cache under CACHE_ROOT; returns wall time and the job's result."""
    from vizsla.jobs import run_job

    spec = ours_spec(root, out, model=args.model, data={"augment": args.augment, "hflip": args.hflip},
                     train=ours_train_config(args))
    with Timer() as timer:
        result = run_job(spec, progress=False)
    return {"seconds": timer.seconds, "result": result, "cache": cache_status(result),
            "summary": cache_summary(cache_root)}


def _accuracy(result: dict[str, Any]) -> float:
    return float(result["metrics"]["test_accuracy"])


def _print_run(label: str, ours: dict[str, Any]) -> None:
    result = ours["result"]
    build = (result.get("feature_cache") or {}).get("build_s") or 0.0
    split = f" (cache build {build:.2f} s + rest of the job {ours['seconds'] - build:.2f} s)" if build else ""
    print(f"{label}: {ours['seconds']:.2f} s{split}, status {result.get('status')}, "
          f"test accuracy {100 * _accuracy(result):.2f}% (on {result.get('test_source')}), "
          f"feature cache {ours['cache']}; {ours['summary']}", flush=True)


def _print_baseline(base: BaselineResult) -> None:
    print(f"baseline: {base.wall_s:.2f} s (train {base.train_s:.2f} s at {base.images_per_s:.1f} images/s, "
          f"eval {base.eval_s:.2f} s), test accuracy {100 * base.test_accuracy:.2f}% "
          f"(on {base.test_split})", flush=True)


def measure(root: Path, args: Any) -> tuple[list[dict[str, Any]], list[BaselineResult], dict | None]:
    """Alternate cold runs of ours and baseline runs; then one warm run of ours on the last cache."""
    ours_runs: list[dict[str, Any]] = []
    base_runs: list[BaselineResult] = []
    warm = None
    for repeat in range(args.repeats):
        with fresh_cache_dir() as cache_root, work_dir() as out:
            ours_runs.append(run_ours(root, args, out / "cold", cache_root))
            _print_run(f"ours (cold cache, run {repeat + 1})", ours_runs[-1])
            if not args.skip_warm and repeat == args.repeats - 1:
                warm = run_ours(root, args, out / "warm", cache_root)
                _print_run("ours (warm cache, same cache folder)", warm)
        base_runs.append(run_baseline(root, baseline_config(args)))
        _print_baseline(base_runs[-1])
    return ours_runs, base_runs, warm


def report(ours_runs: list[dict[str, Any]], base_runs: list[BaselineResult], warm: dict | None,
           args: Any) -> bool:
    """Print the side-by-side table (medians over repeats) and whether the issue's targets are met."""
    ours_s = statistics.median(run["seconds"] for run in ours_runs)
    base_s = statistics.median(run.wall_s for run in base_runs)
    ours_acc = statistics.median(_accuracy(run["result"]) for run in ours_runs)
    base_acc = statistics.median(run.test_accuracy for run in base_runs)
    ours_images = int(ours_runs[0]["result"]["data"]["images"]["train"]) * args.epochs
    rows = [
        Row("wall time, cache build included", ours_s, base_s, "s", "time"),
        Row("train images/s (train images x epochs / wall time)", ours_images / ours_s,
            base_runs[0].train_images / base_s, "images/s", "speed"),
        Row("test accuracy", ours_acc, base_acc, kind="accuracy"),
    ]
    if warm is not None:
        rows.insert(1, Row("wall time, warm cache (ours) vs baseline", warm["seconds"], base_s, "s", "time"))
    print_table(f"Head-only training, {args.epochs} epochs, median of {args.repeats} run(s)", rows)
    # Each pair ran minutes apart, so its ratio sees the same machine load; the target uses their median.
    ratios = [base.wall_s / ours["seconds"] for ours, base in zip(ours_runs, base_runs, strict=True)]
    print("speed-up of each (ours, baseline) pair: " + ", ".join(f"{ratio:.1f}x" for ratio in ratios))
    speed_ok = check_target("wall-time speed-up (baseline/ours, median of pairs), cache build included",
                            statistics.median(ratios), SPEEDUP_TARGET)
    acc_ok = check_accuracy("test accuracy", ours_acc, base_acc, ACCURACY_TOLERANCE)
    return speed_ok and acc_ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dataset = pick_dataset(args.data)
    args.hflip = flips_ok(dataset[1])
    print_header("Benchmark 1: head-only training, ours (feature cache) vs tutorial baseline", dataset)
    warm_up_imports()
    print_config("ours", {"model": args.model, "augment": args.augment, **ours_train_config(args),
                          "tracking": "off", "cache": "fresh empty folder per cold run"})
    print_config("baseline",
                 {**baseline_config(args).__dict__, "transforms": "tutorial", "precision": "fp32"})
    ours_runs, base_runs, warm = measure(dataset[0], args)
    report(ours_runs, base_runs, warm, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
