"""Benchmark: serving the int8 export (`vizsla serve --runtime onnx-int8`) vs the fp32 ONNX model it is from.

One head-only efficientnet_lite0 job on real photos (trained here unless --job names one) is quantised with
`vizsla export --quantize int8` (ONNX Runtime static QDQ, calibrated on the job's training images), which
prints the accuracy change it measured on the job's test split. Then the same endpoint runs twice under the
same load (bench_serving's client: C concurrent connections sending the val JPEGs), once on the fp32 ONNX
model (the default runtime, the baseline here) and once on the int8 one; their top-1 agreement is counted.

    python benchmarks/bench_int8.py [--job DIR] [--concurrency 16] [--requests 400] [--seconds 60] [--quick]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from bench_serving import Server, free_port, measure, parse_args, running, train_job, val_jpegs
from common import Row, pick_dataset, print_config, print_header, print_table, work_dir


def quantise(job: Path) -> str:
    """Run `vizsla export --quantize int8` on JOB (into its model folder); returns what it printed."""
    command = [sys.executable, "-m", "vizsla", "export", str(job), "--quantize", "int8"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"export failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(done.stdout.strip(), flush=True)
    return done.stdout


def server(name: str, job: Path, runtime: str, log: Path, extra: list[str]) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "vizsla", "serve", str(job), "--runtime", runtime]
    return Server(name, [*command, "--host", "127.0.0.1", "--port", str(port), *extra], port, log)


def main(argv: list[str] | None = None) -> int:
    args: Any = parse_args(argv)
    dataset = pick_dataset(args.data)
    print_header("Benchmark: serving int8 vs fp32 ONNX (same endpoint, same load)", dataset)
    payloads = val_jpegs(dataset[0])
    print_config(
        "load",
        {"concurrency": args.concurrency, "requests": args.requests, "seconds": args.seconds,
         "warmup": args.warmup, "images": len(payloads)},
    )  # fmt: skip
    with work_dir("vizsla-bench-int8-") as tmp:
        job = Path(args.job) if args.job else train_job(dataset[0], tmp / "job", args)
        quantise(job)
        fp32 = server("fp32 onnx", job, "onnx", tmp / "fp32.log", args.serve_arg)
        int8 = server("int8 onnx", job, "onnx-int8", tmp / "int8.log", args.serve_arg)
        with running(fp32):
            fp32_result = measure(fp32, payloads, args)
        with running(int8):
            int8_result = measure(int8, payloads, args)
    rows = [
        Row("throughput", int8_result.throughput, fp32_result.throughput, "req/s", kind="speed"),
        Row("latency p50", int8_result.percentile_ms(50), fp32_result.percentile_ms(50), "ms", kind="time"),
        Row("latency p99", int8_result.percentile_ms(99), fp32_result.percentile_ms(99), "ms", kind="time"),
        Row("requests answered", int8_result.ok, fp32_result.ok, kind="info"),
    ]
    print_table(f"int8 (ours) vs fp32 ONNX (baseline): {args.concurrency} concurrent connections", rows)
    both = sorted(set(int8_result.top1) & set(fp32_result.top1))
    same = sum(int8_result.top1[name] == fp32_result.top1[name] for name in both)
    print(f"top-1 agreement int8 vs fp32: {same}/{len(both)} images", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
