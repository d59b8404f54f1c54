"""Benchmark: the quick-start digits job with 1 process vs 2 processes (torchrun, gloo) on this machine.

The same full fine-tune (efficientnet_lite0 at 96 px, global batch 32, same seed) runs once with one
process and once with `--nproc-per-node 2`, through the CLI as users run it. Printed: wall time of the whole
command, mean train images/s over the epochs (from each job's metrics.jsonl), and test accuracy. On a
2-core CPU two processes share the same cores, so no speed-up is expected; the figure says what it costs.

    python benchmarks/bench_distributed.py [--epochs 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--quick", action="store_true", help="1 epoch (smoke run)")
    return parser.parse_args(argv)


def run_job(data: Path, output: Path, epochs: int, *extra: str) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "vizsla", "train", "--config", str(REPO / "examples" / "digits.yaml"),
        "--data", str(data), "--output", str(output), "--epochs", str(epochs), "--no-tracking", "--quiet",
        *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"job failed: {' '.join(command)}\n{proc.stderr[-3000:]}")
    result = json.loads((output / "result.json").read_text())
    epochs_seen = [
        json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line
    ]
    records = [r for r in epochs_seen if r.get("kind") == "epoch"]
    images = result["data"]["images"]["train"]
    rate = sum(images / r["epoch_time_s"] for r in records) / len(records)
    return {"wall_s": wall, "train_images_per_s": rate, "test_accuracy": result["metrics"]["test_accuracy"]}


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
    print()
    print(f"{'metric':40} {'2 processes':>12} {'1 process':>10} {'2/1':>7}")
    for key, label in (
        ("wall_s", "wall time of the command (s)"),
        ("train_images_per_s", "train images/s"),
        ("test_accuracy", "test accuracy"),
    ):
        print(f"{label:40} {two[key]:12.4f} {one[key]:10.4f} {two[key] / one[key]:7.3f}")
    gap = abs(two["test_accuracy"] - one["test_accuracy"]) * 100
    verdict = "MET" if gap <= 1 else "MISSED"
    print(f"test accuracy difference: {gap:.2f} points (target <= 1 point): {verdict}")


if __name__ == "__main__":
    main()
