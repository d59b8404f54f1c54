"""Benchmark: how many cached views a head on a frozen backbone needs (what `feature_views: auto` rests on).

For each dataset, head-only jobs (efficientnet_lite0, 10 epochs, defaults otherwise) train on a feature
cache of one unaugmented view (the eval transform) and of 1, 2 and 4 augmented views (random resized crop +
flip, a view drawn per image each epoch), over several seeds; each configuration's first run builds its cache
(timed), the other seeds reuse it. Printed: test accuracy per seed and mean, and the extraction time of each
cache, so the accuracy a view buys sits beside what it costs.

    python benchmarks/bench_views.py [--data DIR ...] [--seeds 3] [--views 1,2,4] [--quick]
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from common import SHARED_DATASETS, Row, fresh_cache_dir, ours_spec, print_header, print_table, work_dir


def parse_args(argv: list[str] | None = None) -> Any:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", default=None,
                        help="image folder (repeat); default: hymenoptera and flowers102")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per configuration")
    parser.add_argument("--views", default="1,2,4", help="augmented view counts to compare")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="smoke run: hymenoptera, 1 seed, 2 epochs")
    args = parser.parse_args(argv)
    if args.data is None:
        args.data = [str(SHARED_DATASETS / "hymenoptera")]
        if not args.quick:
            args.data.append(str(SHARED_DATASETS / "flowers102"))
    if args.quick:
        args.seeds, args.epochs, args.views = 1, 2, "2"
    return args


def _run(root: Path, output: Path, cache: Path, *, augment: bool, views: int, seed: int,
         epochs: int) -> tuple[float, float]:
    """(test accuracy, feature cache build seconds) of one head-only job."""
    from vizsla.jobs import run_job

    spec = ours_spec(root, output, data={"augment": augment},
                     train={"finetune": "head", "epochs": epochs, "feature_views": views, "seed": seed},
                     cache_dir=cache)
    result = run_job(spec, progress=False)
    info = result.get("feature_cache") or {}
    return float(result["metrics"]["test_accuracy"]), 0.0 if info.get("hit") else float(info["build_s"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configs = [("1 unaugmented view", False, 1)] + [
        (f"{v} augmented view{'s' if int(v) > 1 else ''}", True, int(v)) for v in args.views.split(",")]
    for data in args.data:
        root = Path(data).resolve()
        title = f"bench_views: cached views for a head on a frozen backbone, {root.name}"
        print_header(title, (root, root.name))
        results: dict[str, list[float]] = {}
        build: dict[str, float] = {}
        with fresh_cache_dir() as cache, work_dir() as work:
            for name, augment, views in configs:
                for seed in range(args.seeds):
                    started = time.perf_counter()
                    accuracy, built = _run(root, work / f"{views}-{augment}-{seed}", cache, augment=augment,
                                           views=views, seed=seed, epochs=args.epochs)
                    results.setdefault(name, []).append(accuracy)
                    build[name] = build.get(name, 0.0) + built
                    print(f"{name}, seed {seed}: test accuracy {accuracy:.4f}, cache built in {built:.1f} s, "
                          f"job {time.perf_counter() - started:.1f} s", flush=True)
        reference = statistics.mean(results[configs[0][0]])
        rows = [Row(f"test accuracy, {name} (mean of {len(accs)})", statistics.mean(accs), reference, "",
                    "accuracy") for name, accs in results.items()]
        rows += [Row(f"extraction seconds, {name}", build[name], build[configs[0][0]], "s", "time")
                 for name in results]
        print_table(f"{root.name}: accuracy and extraction cost vs one unaugmented view", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
