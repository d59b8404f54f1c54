"""Benchmark: the endpoint under concurrent load, ours (`vizsla serve`) vs plain FastAPI + eager PyTorch.

Both servers run the same trained model (a head-only efficientnet_lite0 job on hymenoptera, 224 px, trained
here unless --job names one) as subprocesses on free loopback ports. The baseline is written below as the
classic SageMaker `inference.py` is: FastAPI + uvicorn, one request = one eager PyTorch forward, the image
decoded with PIL and put through the model's own eval transform (torchvision) per request, in FastAPI's thread
pool; it answers the same JSON shape as ours. The load is an asyncio + httpx client with C concurrent
connections sending the val split's JPEGs (warm-up first), bounded in count and time, one side after the
other.

    python benchmarks/bench_serving.py [--job DIR] [--concurrency 16] [--requests 400] [--seconds 60]
                                       [--serve-arg=--workers=2 ...] [--baseline threads] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    REPO_ROOT,
    Row,
    base_parser,
    check_target,
    find_split,
    ours_spec,
    pick_dataset,
    print_config,
    print_header,
    print_table,
    work_dir,
)

THROUGHPUT_TARGET = 3.0  # the issue: >= 3x the baseline's throughput at equal or lower p99
SERVER_START_S = 300.0  # ours may export and check an ONNX model before /ping answers
REQUEST_TIMEOUT_S = 70.0  # SageMaker's advice for clients: the 60 s invocation limit plus slack


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--job", default=None, help="a finished job (or model) folder to serve; default: train one"
    )
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the head-only job trained here")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--requests", type=int, default=400, help="measured requests per side (default 400)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound per side (default 60 s)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up requests per side (default 2 x C)")
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `vizsla serve` (repeatable, e.g. --serve-arg=--workers=2)",
    )
    parser.add_argument(
        "--baseline",
        choices=("threads", "event-loop"),
        default="threads",
        help="baseline route: a `def` in FastAPI's thread pool (default) or an `async def` predicting inline",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch, 100 requests, 20 s a side")
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.requests, args.seconds = 1, min(args.requests, 100), min(args.seconds, 20.0)
    if args.warmup is None:
        args.warmup = 2 * args.concurrency
    return args


# ---------------------------------------------------------------- the baseline server (its own process)


def run_baseline_server(job: str, port: int, mode: str) -> None:
    """FastAPI + uvicorn + eager PyTorch, as a hand-written inference.py serves: no batching, no ONNX."""
    import io

    import torch
    import uvicorn
    from fastapi import Body, FastAPI, HTTPException
    from PIL import Image

    import vizsla
    from vizsla.data.transforms import create_transform

    model = vizsla.load_model(job)
    transform = create_transform(model.preprocessing, train=False, augment=False, hflip=False)
    labels = list(model.labels)
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"status": "ok"}

    def predict(payload: bytes) -> dict[str, Any]:
        try:
            image = Image.open(io.BytesIO(payload)).convert("RGB")
        except Exception as exc:  # any undecodable body is the client's fault
            raise HTTPException(400, f"cannot decode image: {exc}") from None
        with torch.no_grad():
            probs = torch.softmax(model(transform(image).unsqueeze(0)), dim=1)[0]
        values, indices = probs.topk(min(5, len(labels)))
        top = [
            {"label": labels[i], "index": i, "probability": float(v)}
            for v, i in zip(values.tolist(), indices.tolist(), strict=True)
        ]
        return {
            "model": "baseline",
            "predictions": [{"label": top[0]["label"], "probability": top[0]["probability"], "topk": top}],
        }

    if mode == "threads":  # FastAPI runs a plain `def` route in its thread pool: forwards overlap

        @app.post("/invocations")
        def invocations(payload: bytes = Body(..., media_type="image/jpeg")) -> dict[str, Any]:
            return predict(payload)

    else:  # an `async def` route that predicts inline: one forward at a time on the event loop

        @app.post("/invocations")
        async def invocations_inline(payload: bytes = Body(..., media_type="image/jpeg")) -> dict[str, Any]:
            return predict(payload)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ---------------------------------------------------------------- servers as subprocesses


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process on a loopback port, its command and the log file it writes."""

    name: str
    command: list[str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start SERVER, wait until GET /ping answers 200, stop it (SIGTERM, then SIGKILL) afterwards."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(server.log, "wb") as out:
        server.proc = subprocess.Popen(
            server.command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env
        )
    try:
        started = time.perf_counter()
        while True:
            if server.proc.poll() is not None:
                raise RuntimeError(
                    f"{server.name} server exited with {server.proc.returncode}:\n{server.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{server.url}/ping", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.perf_counter() - started > SERVER_START_S:
                raise RuntimeError(
                    f"{server.name} server gave no 200 on /ping in {SERVER_START_S:.0f} s:\n"
                    f"{server.log_tail()}"
                )
            time.sleep(0.2)
        print(f"{server.name}: ready in {time.perf_counter() - started:.1f} s on {server.url}", flush=True)
        yield server
    finally:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


# ---------------------------------------------------------------- the load


@dataclass
class LoadResult:
    """One side's answers: latencies of the successes (s), failures by kind, wall time, top-1 per image."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    top1: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        """Nearest-rank percentile Q (0-100) of the successes' latency in ms (nan when none succeeded)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return 1000 * ordered[rank - 1]


async def drive(
    url: str, payloads: list[tuple[str, bytes]], concurrency: int, count: int, seconds: float
) -> LoadResult:
    """COUNT requests (or until SECONDS pass) from CONCURRENCY connections, each sending the next JPEG."""
    import httpx

    result = LoadResult()
    numbers = itertools.count()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Content-Type": "image/jpeg", "Accept": "application/json"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=REQUEST_TIMEOUT_S) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def connection() -> None:
            while (number := next(numbers)) < count and time.perf_counter() < deadline:
                name, data = payloads[number % len(payloads)]
                sent = time.perf_counter()
                try:
                    reply = await client.post("/invocations", content=data, headers=headers)
                except httpx.HTTPError as exc:
                    result.errors[type(exc).__name__] += 1
                    continue
                elapsed = time.perf_counter() - sent
                if reply.status_code != 200:
                    result.errors[f"HTTP {reply.status_code}"] += 1
                    continue
                try:
                    result.top1[name] = str(reply.json()["predictions"][0]["label"])
                except (ValueError, KeyError, IndexError, TypeError):
                    result.errors["unreadable reply"] += 1
                    continue
                result.latencies.append(elapsed)

        await asyncio.gather(*(connection() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - started
    return result


def measure(server: Server, payloads: list[tuple[str, bytes]], args: Any) -> LoadResult:
    """Warm SERVER up, then load it; one line of what it answered."""
    warm = asyncio.run(drive(server.url, payloads, args.concurrency, args.warmup, args.seconds))
    if warm.ok == 0:
        raise RuntimeError(
            f"{server.name} answered none of {args.warmup} warm-up requests ({dict(warm.errors)}):\n"
            f"{server.log_tail()}"
        )
    result = asyncio.run(drive(server.url, payloads, args.concurrency, args.requests, args.seconds))
    print(
        f"{server.name}: {result.ok} ok, {sum(result.errors.values())} failed in {result.wall_s:.1f} s -> "
        f"{result.throughput:.1f} req/s, p50 {result.percentile_ms(50):.0f} ms, "
        f"p99 {result.percentile_ms(99):.0f} ms"
        + (f"; errors {dict(result.errors)}" if result.errors else ""),
        flush=True,
    )
    return result


# ---------------------------------------------------------------- the job and the report


def train_job(root: Path, output: Path, args: Any) -> Path:
    """A head-only job (feature cache on, tracking off) whose exported model both servers load."""
    from vizsla.training import run_job

    spec = ours_spec(
        root,
        output,
        model=args.model,
        train={"finetune": "head", "epochs": args.epochs, "seed": 0},
        model_options={"image_size": args.image_size},
    )
    started = time.perf_counter()
    result = run_job(spec, progress=False)
    if result.get("status") != "Completed":
        raise RuntimeError(
            f"training the served job failed: {result.get('status')} {result.get('failure_reason')}"
        )
    accuracy = result.get("metrics", {}).get("valid_accuracy")
    print(
        f"trained {output} in {time.perf_counter() - started:.0f} s (valid accuracy {accuracy})", flush=True
    )
    return output


def val_jpegs(root: Path) -> list[tuple[str, bytes]]:
    """(relative name, bytes) of every JPEG in the val split (the test split when there is no val)."""
    split = find_split(root, "valid") or find_split(root, "test")
    if split is None:
        raise SystemExit(f"{root} has no val/valid or test split to send")
    paths = sorted(p for p in split.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if not paths:
        raise SystemExit(f"no JPEGs under {split}")
    return [(str(p.relative_to(split)), p.read_bytes()) for p in paths]


def report(ours: LoadResult, base: LoadResult, args: Any) -> None:
    rows = [
        Row("throughput", ours.throughput, base.throughput, "req/s", kind="speed"),
        Row("latency p50", ours.percentile_ms(50), base.percentile_ms(50), "ms", kind="time"),
        Row("latency p99", ours.percentile_ms(99), base.percentile_ms(99), "ms", kind="time"),
        Row("requests answered", ours.ok, base.ok, kind="info"),
        Row("wall time", ours.wall_s, base.wall_s, "s", kind="info"),
    ]
    print_table(f"Serving under load: {args.concurrency} concurrent connections on loopback", rows)
    print(
        f"errors: ours {sum(ours.errors.values())} {dict(ours.errors)}, "
        f"baseline {sum(base.errors.values())} {dict(base.errors)}"
    )
    both = sorted(set(ours.top1) & set(base.top1))
    same = sum(ours.top1[name] == base.top1[name] for name in both)
    print(f"top-1 agreement ours vs baseline: {same}/{len(both)} images", flush=True)
    check_target("throughput ours/baseline", rows[0].ratio, THROUGHPUT_TARGET)
    ours_p99, base_p99 = ours.percentile_ms(99), base.percentile_ms(99)
    verdict = "MET" if ours_p99 <= base_p99 else "MISSED"
    print(
        f"target p99 latency ours <= baseline: {verdict} "
        f"(ours {ours_p99:.0f} ms, baseline {base_p99:.0f} ms, "
        f"ours/baseline {ours_p99 / base_p99:.2f})",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    from vizsla.models.io import resolve_model_dir

    args = parse_args(argv)
    if args.baseline_server:
        run_baseline_server(args.job, args.port, args.baseline)
        return 0
    dataset = pick_dataset(args.data)
    print_header("Benchmark: serving, ours (vizsla serve) vs FastAPI + eager PyTorch", dataset)
    payloads = val_jpegs(dataset[0])
    print_config(
        "load",
        {
            "client": "asyncio + httpx",
            "concurrency": args.concurrency,
            "requests": args.requests,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "images": len(payloads),
            "content-type": "image/jpeg",
        },
    )
    with work_dir("vizsla-bench-serving-") as tmp:
        job = Path(args.job) if args.job else train_job(dataset[0], tmp / "job", args)
        model_dir = resolve_model_dir(job)
        preprocessing = json.loads((model_dir / "preprocessing.json").read_text(encoding="utf-8"))
        print(f"model: {model_dir}, preprocessing {preprocessing}", flush=True)
        ours_port, base_port = free_port(), free_port()
        ours = Server(
            "ours",
            [
                sys.executable,
                "-m",
                "vizsla",
                "serve",
                str(job),
                "--host",
                "127.0.0.1",
                "--port",
                str(ours_port),
                *args.serve_arg,
            ],
            ours_port,
            tmp / "ours.log",
        )
        base = Server(
            "baseline",
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--baseline-server",
                "--job",
                str(job),
                "--port",
                str(base_port),
                "--baseline",
                args.baseline,
            ],
            base_port,
            tmp / "baseline.log",
        )
        print_config("ours", {"command": " ".join(ours.command[1:])})
        print_config(
            "baseline",
            {
                "server": "FastAPI + uvicorn, 1 process",
                "route": "def in the thread pool" if args.baseline == "threads" else "async def, inline",
                "runtime": "torch eager fp32",
                "decode": "PIL",
                "batching": "none",
            },
        )
        with running(base), running(ours):
            base_result = measure(base, payloads, args)
            ours_result = measure(ours, payloads, args)
    report(ours_result, base_result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
