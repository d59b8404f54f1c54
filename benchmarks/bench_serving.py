"""Benchmark: the endpoint under load: ours (`vizsla serve`) vs a tuned LitServe and plain FastAPI + PyTorch.

All three serve the same trained model: a head-only efficientnet_lite0 job (224 px) trained here on --data
(default: hymenoptera) unless --job names a finished job. One server runs at a time, as a subprocess on a
free loopback port:
- ours: `vizsla serve JOB` (a head-only job runs as its backbone's ONNX export + the head in numpy);
- LitServe, twice: benchmarks/peers/litserve_server.py in its own virtual environment
  (runs/bench-envs/litserve, made on first use with litserve 0.2.x and this venv's onnxruntime, pillow and
  numpy versions; skipped with a message when it cannot be made), serving the job's classifier as exported
  by `vizsla export` (one ONNX file, checked against torch) with the same preprocessing (JPEG draft decoding,
  resize, crop, normalise: the same pixels), LitServe's batching (max_batch_size as ours, batch_timeout
  2 ms), ZeroMQ queues, one inference worker. "litserve" decodes each image in decode_request (LitServe's
  pattern: one by one in the worker); "litserve-par" decodes a batch's images in parallel threads in
  predict (tuned beyond LitServe's examples: on a CPU it overlaps decoding like ours does);
- baseline: FastAPI + uvicorn, one request = one eager PyTorch forward, as the classic SageMaker
  `inference.py` is written (PIL decode, the model's torchvision eval transform, FastAPI's thread pool).
Each answers POST /invocations (JPEG bytes) with the same JSON shape. Per server: the time from its start to
its first answer, a warm-up (2 x C requests), then 1 client (--single-requests), then C concurrent clients
(--requests, bounded by --seconds); every measured request counts, from the first one after the warm-up.
The load is an asyncio + httpx client sending the val split's JPEGs.

Targets (issue 16), printed against each LitServe peer: ours >= 1.5x LitServe's req/s at C clients; ours'
p50 at 1 client <= LitServe's; then ours' p99 <= 2 x its p50 at C clients; ours' first answer <= 5 s after
its start; and the older ones against the baseline (>= 3x its req/s, p99 not above its p99).

    python benchmarks/bench_serving.py [--job DIR | --data DIR] [--concurrency 16] [--requests 400]
        [--single-requests 200] [--seconds 60] [--peers litserve,litserve-par,baseline]
        [--serve-arg=--workers=2 ...]
        [--baseline threads] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import signal
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
    base_parser,
    check_target,
    find_split,
    ours_spec,
    pick_dataset,
    print_config,
    print_header,
    work_dir,
)

THROUGHPUT_TARGET = 3.0  # the first serving issue: >= 3x the baseline's throughput at equal or lower p99
LITSERVE_THROUGHPUT_TARGET = 1.5  # issue 16: >= 1.5x LitServe's req/s at C clients
START_TARGET_S = 5.0  # issue 16: a head-only job's first answer <= 5 s after `vizsla serve` starts
SERVER_START_S = 300.0  # a first start may export and check an ONNX model before it answers
REQUEST_TIMEOUT_S = 70.0  # SageMaker's advice for clients: the 60 s invocation limit plus slack
PEERS = ("litserve", "litserve-par", "baseline")
LITSERVE_DECODE = {"litserve": "request", "litserve-par": "parallel"}  # peer name -> the peer's decode mode
LITSERVE_ENV = REPO_ROOT / "runs" / "bench-envs" / "litserve"
LITSERVE_SERVER = Path(__file__).resolve().parent / "peers" / "litserve_server.py"
LITSERVE_REQUIREMENT = "litserve>=0.2,<0.3"
LITSERVE_BATCH_TIMEOUT_S = 0.002
REUSED_MARK = "reusing the backbone export"


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--job", default=None, help="a finished job (or model) folder to serve; default: train one on --data"
    )
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the head-only job trained here")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument(
        "--requests", type=int, default=400, help="measured requests at C clients (default 400)"
    )
    parser.add_argument(
        "--single-requests", type=int, default=200, help="measured requests at 1 client (default 200)"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound per phase (default 60 s)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="warm-up requests per server (default 2 x C)"
    )
    parser.add_argument("--max-batch-size", type=int, default=16, help="ours' and LitServe's batch limit")
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help="peers to run besides ours, comma-separated (default all): litserve (images decoded one by one "
        "in decode_request, LitServe's pattern), litserve-par (a batch's images decoded in parallel threads "
        "in predict), baseline (FastAPI + eager PyTorch)",
    )
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
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 epoch, 100 + 50 requests, 20 s a phase"
    )
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.requests, args.seconds = 1, min(args.requests, 100), min(args.seconds, 20.0)
        args.single_requests = min(args.single_requests, 50)
    if args.warmup is None:
        args.warmup = 2 * args.concurrency
    args.peers = [name.strip() for name in args.peers.split(",") if name.strip()]
    unknown = sorted(set(args.peers) - set(PEERS))
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
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
    """A server process on a loopback port, its command, the log file it writes and when it answered."""

    name: str
    command: list[str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    health_path: str = "/ping"
    probe: bytes | None = None  # a JPEG: time the first 200 on /invocations from the start
    ready_s: float = float("nan")  # start -> first 200 on health_path
    first_answer_s: float = float("nan")  # start -> first 200 on /invocations (with a probe)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def _answers(url: str, body: bytes | None) -> bool:
    """Whether URL answers 200 now: GET, or POST BODY as image/jpeg."""
    headers = {"Content-Type": "image/jpeg"} if body is not None else {}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start SERVER, wait until its health route answers 200, stop it (SIGTERM, then SIGKILL) afterwards.

    With a probe, the time from the start to the first 200 on POST /invocations is recorded too."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    with open(server.log, "wb") as out:
        server.proc = subprocess.Popen(  # its own process group: stopping it stops its children too
            server.command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,
        )
    try:
        while True:
            if server.proc.poll() is not None:
                raise RuntimeError(
                    f"{server.name} server exited with {server.proc.returncode}:\n{server.log_tail()}"
                )
            if server.probe is not None and _answers(f"{server.url}/invocations", server.probe):
                server.first_answer_s = server.ready_s = time.perf_counter() - started
                break
            if server.probe is None and _answers(f"{server.url}{server.health_path}", None):
                server.ready_s = time.perf_counter() - started
                break
            if time.perf_counter() - started > SERVER_START_S:
                raise RuntimeError(
                    f"{server.name} server gave no 200 in {SERVER_START_S:.0f} s:\n{server.log_tail()}"
                )
            time.sleep(0.05)
        what = "first answer" if server.probe is not None else "ready"
        print(f"{server.name}: {what} {server.ready_s:.2f} s after its start, on {server.url}", flush=True)
        yield server
    finally:
        stop(server.proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (LitServe's workers outlive a SIGTERM to their parent alone),
    then SIGKILL to whatever of the group is left after 30 s (the parent) or 5 s more (its children)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


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
    """Warm SERVER up, then load it with C clients; one line of what it answered."""
    warm_up(server, payloads, args)
    return load(server, payloads, args.concurrency, args.requests, args.seconds)


def warm_up(server: Server, payloads: list[tuple[str, bytes]], args: Any) -> None:
    warm = asyncio.run(drive(server.url, payloads, args.concurrency, args.warmup, args.seconds))
    if warm.ok == 0:
        raise RuntimeError(
            f"{server.name} answered none of {args.warmup} warm-up requests ({dict(warm.errors)}):\n"
            f"{server.log_tail()}"
        )


def load(
    server: Server, payloads: list[tuple[str, bytes]], clients: int, count: int, seconds: float
) -> LoadResult:
    """COUNT requests from CLIENTS connections (SECONDS at most); one line of what SERVER answered."""
    result = asyncio.run(drive(server.url, payloads, clients, count, seconds))
    print(
        f"{server.name} at {clients} client(s): {result.ok} ok, {sum(result.errors.values())} failed in "
        f"{result.wall_s:.1f} s -> {result.throughput:.1f} req/s, p50 {result.percentile_ms(50):.1f} ms, "
        f"p99 {result.percentile_ms(99):.1f} ms"
        + (f"; errors {dict(result.errors)}" if result.errors else ""),
        flush=True,
    )
    return result


@dataclass
class Side:
    """One server's figures: start-up, 1 client, C clients."""

    name: str
    start_s: float
    single: LoadResult
    loaded: LoadResult


def measure_side(server: Server, payloads: list[tuple[str, bytes]], args: Any) -> Side:
    """Start SERVER, warm it up, then 1 client, then C clients."""
    with running(server):
        warm_up(server, payloads, args)
        single = load(server, payloads, 1, args.single_requests, args.seconds)
        loaded = load(server, payloads, args.concurrency, args.requests, args.seconds)
    start = server.first_answer_s if server.probe is not None else server.ready_s
    return Side(server.name, start, single, loaded)


# ---------------------------------------------------------------- the job, the peers' files


def train_job(root: Path, output: Path, args: Any) -> Path:
    """A head-only job (feature cache on, tracking off) on ROOT whose model every server loads."""
    from vizsla.jobs import run_job

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


def val_jpegs(root: Path, limit: int = 400) -> list[tuple[str, bytes]]:
    """(relative name, bytes) of the val split's JPEGs (else the test split's, else any under ROOT)."""
    split = find_split(root, "valid") or find_split(root, "test") or Path(root)
    paths = sorted(p for p in split.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file())
    if not paths:
        raise SystemExit(f"no JPEGs under {split} to send")
    if len(paths) > limit:  # spread over the folder (so over its classes), not its first class only
        paths = [paths[i * len(paths) // limit] for i in range(limit)]
    return [(str(p.relative_to(split)), p.read_bytes()) for p in paths]


def litserve_python(env: Path = LITSERVE_ENV) -> tuple[Path | None, str]:
    """The peer venv's python (made on first use) and its package versions, or (None, why it is missing)."""
    python = env / "bin" / "python"
    check = "import litserve, onnxruntime, PIL, numpy; print(litserve.__version__, onnxruntime.__version__)"
    if not python.exists():
        import importlib.metadata

        pins = []
        for package in ("onnxruntime", "pillow", "numpy"):  # the kernels and decoder ours runs on
            try:
                pins.append(f"{package}=={importlib.metadata.version(package)}")
            except importlib.metadata.PackageNotFoundError:
                pins.append(package)
        print(f"making the LitServe peer's virtual environment {env} (once)", flush=True)
        made = subprocess.run([sys.executable, "-m", "venv", str(env)], capture_output=True, text=True)
        if made.returncode != 0:
            return None, f"python -m venv failed: {made.stderr.strip()[-500:]}"
        for requirements in ([LITSERVE_REQUIREMENT, *pins], [LITSERVE_REQUIREMENT, "onnxruntime", "pillow"]):
            pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            installed = subprocess.run([*pip, *requirements], capture_output=True, text=True)
            if installed.returncode == 0:
                break
        else:
            return None, f"pip install {LITSERVE_REQUIREMENT} failed: {installed.stderr.strip()[-500:]}"
    done = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    if done.returncode != 0:
        return None, f"{env} cannot import litserve/onnxruntime/pillow/numpy: {done.stderr.strip()[-500:]}"
    litserve_version, ort_version = done.stdout.split()
    return python, f"litserve {litserve_version}, onnxruntime {ort_version}"


def litserve_config(job: Path, onnx_file: Path, port: int, decode: str, args: Any) -> dict[str, Any]:
    """What the peer needs to serve the job's classifier with our preprocessing and batching."""
    from vizsla.data.transforms import draft_size_for, eval_resize_size
    from vizsla.infra.hardware import available_cores
    from vizsla.models.io import read_config, resolve_model_dir

    config = read_config(resolve_model_dir(job))
    pre = config["preprocessing"]
    resize = eval_resize_size(pre)
    return {
        "model": str(onnx_file),
        "labels": list(config["labels"]),
        "input_hw": [int(pre["input_size"][1]), int(pre["input_size"][2])],
        "resize": resize if isinstance(resize, int) else list(resize),
        "interpolation": str(pre.get("interpolation", "bilinear")).lower(),
        "mean": [float(v) for v in pre["mean"]],
        "std": [float(v) for v in pre["std"]],
        "draft_size": draft_size_for(pre),
        "max_batch_size": args.max_batch_size,
        "batch_timeout": LITSERVE_BATCH_TIMEOUT_S,
        "port": port,
        "threads": available_cores(),
        "fast_queue": True,
        "decode": decode,
    }


def export_classifier(job: Path, output: Path) -> Path:
    """The job's whole classifier as one ONNX file (`vizsla export`, checked against torch)."""
    command = [sys.executable, "-m", "vizsla", "export", str(job), "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"vizsla export failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print(done.stdout.strip(), flush=True)
    return output


# ---------------------------------------------------------------- the report


def _cell(value: float, digits: int = 1) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
    )


def _ratio(ours: float, other: float) -> float:
    return ours / other if other and not math.isnan(other) and not math.isnan(ours) else float("nan")


def report(sides: dict[str, Side], args: Any) -> None:
    """One table (ours, LitServe, baseline, ratios), top-1 agreement and the target lines."""
    clients = args.concurrency
    metrics = [
        ("start to first answer (s)", lambda s: s.start_s, 2),
        (f"throughput at {clients} clients (req/s)", lambda s: s.loaded.throughput, 1),
        (f"latency p50 at {clients} clients (ms)", lambda s: s.loaded.percentile_ms(50), 1),
        (f"latency p99 at {clients} clients (ms)", lambda s: s.loaded.percentile_ms(99), 1),
        ("throughput at 1 client (req/s)", lambda s: s.single.throughput, 1),
        ("latency p50 at 1 client (ms)", lambda s: s.single.percentile_ms(50), 2),
        ("latency p99 at 1 client (ms)", lambda s: s.single.percentile_ms(99), 2),
        (
            "failed requests",
            lambda s: float(sum(s.single.errors.values()) + sum(s.loaded.errors.values())),
            0,
        ),
    ]
    names = ["ours", *[name for name in PEERS if name in sides]]
    header = ["metric", *names, *[f"ours/{name}" for name in names[1:]]]
    rows = []
    for label, get, digits in metrics:
        values = [get(sides[name]) for name in names]
        ratios = [_cell(_ratio(values[0], value), 2) for value in values[1:]]
        rows.append([label, *[_cell(value, digits) for value in values], *ratios])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    title = f"Serving: ours vs {', '.join(names[1:]) or 'nobody'} (loopback, one server at a time)"
    print(f"\n{title}\n{'-' * len(title)}")
    for row in [header, *rows]:
        cells = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("  ".join([row[0].ljust(widths[0]), *cells]))
    ours = sides["ours"]
    for name in names[1:]:
        both = sorted(set(ours.loaded.top1) & set(sides[name].loaded.top1))
        same = sum(ours.loaded.top1[k] == sides[name].loaded.top1[k] for k in both)
        print(f"top-1 agreement ours vs {name}: {same}/{len(both)} images")
    print(flush=True)
    p50, p99 = ours.loaded.percentile_ms(50), ours.loaded.percentile_ms(99)
    start_ratio = START_TARGET_S / ours.start_s
    check_target(f"{START_TARGET_S:g} s / ours' start-to-first-answer (s)", start_ratio, 1.0)
    check_target(f"2 x p50 / p99 of ours at {clients} clients (p99 <= 2 x p50)", 2 * p50 / p99, 1.0)
    for name in [name for name in LITSERVE_DECODE if name in sides] or ["litserve"]:
        if name not in sides:
            print(
                "target throughput ours/LitServe and p50 at 1 client vs LitServe: not measured (no LitServe)"
            )
            break
        lit = sides[name]
        check_target(
            f"throughput ours/{name} at {clients} clients",
            _ratio(ours.loaded.throughput, lit.loaded.throughput),
            LITSERVE_THROUGHPUT_TARGET,
        )
        check_target(
            f"p50 latency at 1 client {name}/ours (ours <= {name})",
            _ratio(lit.single.percentile_ms(50), ours.single.percentile_ms(50)),
            1.0,
        )
    if "baseline" in sides:
        base = sides["baseline"]
        check_target(
            "throughput ours/baseline",
            _ratio(ours.loaded.throughput, base.loaded.throughput),
            THROUGHPUT_TARGET,
        )
        base_p99 = base.loaded.percentile_ms(99)
        verdict = "MET" if p99 <= base_p99 else "MISSED"
        print(
            f"target p99 latency ours <= baseline: {verdict} "
            f"(ours {p99:.0f} ms, baseline {base_p99:.0f} ms, ours/baseline {p99 / base_p99:.2f})",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    from vizsla.models.io import resolve_model_dir

    args = parse_args(argv)
    if args.baseline_server:
        run_baseline_server(args.job, args.port, args.baseline)
        return 0
    dataset = pick_dataset(args.data)
    print_header("Benchmark: serving, ours (vizsla serve) vs LitServe vs FastAPI + eager PyTorch", dataset)
    payloads = val_jpegs(dataset[0])
    print_config(
        "load",
        {
            "client": "asyncio + httpx",
            "concurrency": args.concurrency,
            "requests": args.requests,
            "single-client requests": args.single_requests,
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
        sides: dict[str, Side] = {"ours": measure_ours(job, tmp, payloads, args)}
        sides.update(measure_litserve_peers(job, tmp, payloads, args))
        if "baseline" in args.peers:
            sides["baseline"] = measure_baseline(job, tmp, payloads, args)
    report(sides, args)
    return 0


def measure_ours(job: Path, tmp: Path, payloads: list[tuple[str, bytes]], args: argparse.Namespace) -> Side:
    """`vizsla serve` of the job; a first, untimed start exports what the job did not (e.g. the backbone)."""
    serve = [sys.executable, "-m", "vizsla", "serve", str(job), "--host", "127.0.0.1"]
    serve += ["--max-batch-size", str(args.max_batch_size), *args.serve_arg]
    print_config("ours", {"command": " ".join(serve[1:])})
    ours_port = free_port()
    ours = Server("ours", [*serve, "--port", str(ours_port)], ours_port, tmp / "ours.log")
    ours.probe = payloads[0][1]
    with running(ours):
        pass
    what = "reused the backbone export" if REUSED_MARK in ours.log_text() else "exported"
    print(f"ours: first start {ours.first_answer_s:.1f} s ({what}); the next start is timed", flush=True)
    side = measure_side(ours, payloads, args)
    print(f"ours: reused the backbone export: {REUSED_MARK in ours.log_text()}", flush=True)
    return side


def measure_litserve_peers(
    job: Path, tmp: Path, payloads: list[tuple[str, bytes]], args: argparse.Namespace
) -> dict[str, Side]:
    """LitServe (in its own venv) serving the job's ONNX export, once per decode setting asked for."""
    lit_peers = [name for name in LITSERVE_DECODE if name in args.peers]
    python, versions = litserve_python() if lit_peers else (None, "")
    if lit_peers and python is None:
        print(f"LitServe peers skipped: {versions}", flush=True)
    if not lit_peers or python is None:
        return {}
    onnx_file = export_classifier(job, tmp / "classifier.onnx")
    sides: dict[str, Side] = {}
    for name in lit_peers:
        port = free_port()
        config = litserve_config(job, onnx_file, port, LITSERVE_DECODE[name], args)
        config_file = tmp / f"{name}.json"
        config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
        decode = ("a batch's images in parallel threads in predict" if config["decode"] == "parallel"
                  else "one by one in decode_request")
        print_config(
            name,
            {
                "venv": LITSERVE_ENV.relative_to(REPO_ROOT),
                "versions": versions,
                "max_batch_size": config["max_batch_size"],
                "batch_timeout": config["batch_timeout"],
                "workers": 1,
                "fast_queue": config["fast_queue"],
                "model": "vizsla export of the job (one ONNX file)",
                "decode": "Pillow + JPEG draft, " + decode,
            },
        )
        lit = Server(name, [str(python), str(LITSERVE_SERVER), str(config_file)], port, tmp / f"{name}.log",
                     health_path="/health")
        lit.probe = payloads[0][1]
        sides[name] = measure_side(lit, payloads, args)
    return sides


def measure_baseline(
    job: Path, tmp: Path, payloads: list[tuple[str, bytes]], args: argparse.Namespace
) -> Side:
    """The plain FastAPI + eager PyTorch server this script also is (--baseline-server)."""
    port = free_port()
    command = [sys.executable, str(Path(__file__).resolve()), "--baseline-server", "--job", str(job)]
    command += ["--port", str(port), "--baseline", args.baseline]
    base = Server("baseline", command, port, tmp / "baseline.log")
    base.probe = payloads[0][1]
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
    return measure_side(base, payloads, args)


if __name__ == "__main__":
    sys.exit(main())
