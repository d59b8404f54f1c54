"""Benchmark: the quick-start digits job with 1 process vs 2 processes (torchrun, gloo) on this machine.

The same full fine-tune (efficientnet_lite0 at 96 px, global batch 32, same seed) runs once with one
process and once with `--nproc-per-node 2`, through the CLI as users run it. Printed: wall time of the whole
command, mean train images/s over the epochs (from each job's metrics.jsonl), and test accuracy. On a
2-core CPU two processes share the same cores, so no speed-up is expected; the figure says what it costs.
Every run starts with an empty cache folder of its own (image checks, feature cache), so the order of the runs
does not favour the second.

Then a tuning job on the same data with `--trial-nproc 1` vs `--trial-nproc 2` (head-only trials, the same
seeded Random search, so both runs try the same learning rates): wall time, mean trial duration and best
valid accuracy, i.e. what making every trial a 2-process job costs or gains here.

    python benchmarks/bench_distributed.py [--epochs 2] [--trials 4] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import print_config, print_header, work_dir

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--trials", type=int, default=4, help="trials of the tuning comparison")
    parser.add_argument("--quick", action="store_true", help="1 epoch, 2 trials (smoke run)")
    return parser.parse_args(argv)


def timed_vizsla(arguments: list[str], output: Path) -> float:
    """Run `python -m vizsla ARGUMENTS` with a cache folder of its own (neither run reuses the other's image
    checks or backbone features); returns its wall time, or stops the benchmark when it fails."""
    command = [sys.executable, "-m", "vizsla", *arguments]
    env = {**os.environ, "VIZSLA_CACHE_DIR": str(output.with_name(output.name + "-cache"))}
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{proc.stderr[-3000:]}")
    return wall


def run_job(data: Path, output: Path, epochs: int, *extra: str) -> dict[str, Any]:
    wall = timed_vizsla(
        [
            "train", "--config", str(REPO / "examples" / "digits.yaml"), "--data", str(data),
            "--output", str(output), "--epochs", str(epochs), "--no-tracking", "--quiet", *extra,
        ],  # fmt: skip
        output,
    )
    result = json.loads((output / "result.json").read_text())
    epochs_seen = [
        json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line
    ]
    records = [r for r in epochs_seen if r.get("kind") == "epoch"]
    images = result["data"]["images"]["train"]
    rate = sum(images / r["epoch_time_s"] for r in records) / len(records)
    return {"wall_s": wall, "train_images_per_s": rate, "test_accuracy": result["metrics"]["test_accuracy"]}


def run_tuning(data: Path, output: Path, trials: int, epochs: int, nproc: int) -> dict[str, Any]:
    """A seeded Random search over the learning rate, head-only trials, one trial at a time."""
    space = output.with_suffix(".yaml")
    space.write_text("ranges:\n  lr: {type: Continuous, min: 0.001, max: 0.05, scaling: Logarithmic}\n")
    wall = timed_vizsla(
        [
            "tune", "--config", str(REPO / "examples" / "digits.yaml"), "--data", str(data),
            "--space", str(space), "--output", str(output), "--strategy", "Random", "--seed", "0",
            "--max-jobs", str(trials), "--epochs", str(epochs), "--finetune", "head",
            "--trial-nproc", str(nproc), "--no-tracking", "--quiet",
        ],  # fmt: skip
        output,
    )
    import csv

    with (output / "analytics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    durations = [float(r["duration_s"]) for r in rows if r["duration_s"]]
    result = json.loads((output / "result.json").read_text())
    return {
        "wall_s": wall,
        "mean_trial_s": sum(durations) / len(durations),
        "best_valid_accuracy": result["best"]["value"],
        "completed": result["counts"]["Completed"],
    }


def print_table(two: dict[str, Any], one: dict[str, Any], rows: tuple[tuple[str, str], ...]) -> None:
    print()
    print(f"{'metric':40} {'2 processes':>12} {'1 process':>10} {'2/1':>7}")
    for key, label in rows:
        print(f"{label:40} {two[key]:12.4f} {one[key]:10.4f} {two[key] / one[key]:7.3f}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    epochs = 1 if args.quick else args.epochs
    print_header("distributed training: 1 process vs 2 processes (torchrun, gloo, CPU)")
    print_config("config", {"epochs": epochs, "model": "efficientnet_lite0", "image_size": 96, "batch": 32})
    with work_dir() as tmp:
        from vizsla.data.digits import create_digits

        create_digits(tmp / "digits")
        one = run_job(tmp / "digits", tmp / "one", epochs)
        two = run_job(tmp / "digits", tmp / "two", epochs, "--nproc-per-node", "2")
        print_table(
            two,
            one,
            (
                ("wall_s", "wall time of the command (s)"),
                ("train_images_per_s", "train images/s"),
                ("test_accuracy", "test accuracy"),
            ),
        )
        gap = abs(two["test_accuracy"] - one["test_accuracy"]) * 100
        verdict = "MET" if gap <= 1 else "MISSED"
        print(f"test accuracy difference: {gap:.2f} points (target <= 1 point): {verdict}")

        trials = 2 if args.quick else args.trials
        print()
        print_header("tuning: every trial 1 process vs 2 processes (--trial-nproc, torchrun, gloo, CPU)")
        print_config("config", {"trials": trials, "epochs": 3, "finetune": "head", "strategy": "Random"})
        tune_one = run_tuning(tmp / "digits", tmp / "tune-one", trials, 3, 1)
        tune_two = run_tuning(tmp / "digits", tmp / "tune-two", trials, 3, 2)
        print_table(
            tune_two,
            tune_one,
            (
                ("wall_s", "wall time of the tuning job (s)"),
                ("mean_trial_s", "mean trial duration (s)"),
                ("best_valid_accuracy", "best valid accuracy"),
                ("completed", "completed trials"),
            ),
        )


if __name__ == "__main__":
    main()
