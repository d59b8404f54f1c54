"""Benchmark: soak: `vizsla serve` under concurrent clients, bad payloads and slow clients, for a fixed time.

One `vizsla serve JOB` process on a free loopback port (a tiny generated job unless --job names one). First
the baseline: the same C clients sending good JPEGs only, no slow clients, for --baseline-duration seconds
(the unloaded server: nothing but the good traffic it must keep serving). Then the soak: C clients for
--duration seconds, a --bad-fraction of their requests bad (a broken JPEG, a wrong content type, an
oversized body, JSON nested 100,000 deep, bad KServe v2 requests), and S slow clients alongside, each
misbehaving again as soon as the server cuts it off:
- headers: trickles a request's headers, one byte at a time, never finishing them (bound: --header-timeout);
- silent: connects and sends nothing (bound: --header-timeout);
- body-stall: announces 1,000 body bytes, sends 10, then nothing (bound: --body-idle-timeout);
- body-trickle: announces 1,000 body bytes and sends one every half idle bound, never idle for long
  (bound: --body-timeout + 1,000 bytes at --body-min-rate).
Reported: good requests/s, good-request p50/p99 (baseline and soak), answers by class (2xx/4xx/5xx/connection
errors) and by payload kind, the server's RSS every --sample-s seconds (psutil; its value after the
warm-up, the first 10% of the soak, then max and final), and for every cut-off slow client how long it
lasted against its bound. The issue's must-show is the default: 10 minutes, 32 clients, 10% bad payloads,
50 slow clients: 0 5xx, good p99 within 2x the baseline's, RSS flat after warm-up, every slow client cut off
within its bound.

    python benchmarks/bench_soak.py [--job DIR] [--duration 600] [--clients 32] [--bad-fraction 0.1]
        [--slow 50] [--baseline-duration S] [--sample-s 5] [--header-timeout 10] [--body-idle-timeout 10]
        [--body-timeout 30] [--body-min-rate 64] [--serve-arg=--workers=2 ...] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_serving import Server, free_port, running
from common import fresh_cache_dir, print_config, print_header, work_dir

REQUEST_TIMEOUT_S = 70.0  # SageMaker's 60 s invocation limit plus slack
SLACK_S = 1.0  # a cut-off this much after its bound still counts as within it (timers, a busy loop)
P99_TARGET = 2.0  # soak p99 <= 2 x the baseline's
RSS_GROWTH_TARGET = 0.10  # final RSS <= 1.1 x the RSS after warm-up
ANNOUNCED = 1000  # body bytes the body-stall and body-trickle clients announce
SLOW_KINDS = ("headers", "body-stall", "silent", "body-trickle")
MIB = 1024 * 1024


def parse_args(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", default=None, help="a finished job (or model) folder; default: a tiny job")
    parser.add_argument("--duration", type=float, default=600.0, help="soak seconds (default 600)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--bad-fraction", type=float, default=0.10, help="bad requests (default 0.1)")
    parser.add_argument("--slow", type=int, default=50, help="slow clients during the soak (default 50)")
    parser.add_argument(
        "--baseline-duration", type=float, default=None, help="baseline seconds (default min(60, duration/4))"
    )
    parser.add_argument("--sample-s", type=float, default=None, help="RSS sampling period (default 5 s)")
    parser.add_argument("--header-timeout", type=float, default=10.0, help="`vizsla serve` option (s)")
    parser.add_argument("--body-idle-timeout", type=float, default=10.0, help="`vizsla serve` option (s)")
    parser.add_argument("--body-timeout", type=float, default=30.0, help="`vizsla serve` option (s)")
    parser.add_argument("--body-min-rate", type=float, default=64.0, help="`vizsla serve` option (KiB/s)")
    parser.add_argument("--max-payload-mb", type=float, default=6.0, help="`vizsla serve` option (MiB)")
    parser.add_argument(
        "--serve-arg", action="append", default=[], metavar="ARG", help="extra `vizsla serve` argument"
    )
    parser.add_argument("--seed", type=int, default=0, help="payload choice seed")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 s, 4 clients, 5 slow clients")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.clients, args.slow = (
            min(args.duration, 20.0),
            min(args.clients, 4),
            min(args.slow, 5),
        )
    if args.baseline_duration is None:
        args.baseline_duration = min(60.0, args.duration / 4)
    if args.sample_s is None:
        args.sample_s = min(5.0, max(1.0, args.duration / 10))
    if not 0 <= args.bad_fraction <= 1:
        parser.error("--bad-fraction must be between 0 and 1")
    return args


# ---------------------------------------------------------------- the job and the payloads


def tiny_job(root: Path) -> Path:
    """A 1-epoch head-only job of vizsla's 32 px test model on generated images (trains in seconds), its
    backbone exported here: `vizsla serve` then runs it as ONNX Runtime + the head in numpy, without torch,
    as it serves a head-only job in production (bench_serving's path)."""
    from vizsla.jobs import run_job
    from vizsla.serving.runtime import load_served_model
    from vizsla.spec import build_spec
    from vizsla.testing.images import make_image_folder
    from vizsla.testing.jobs import tiny_spec_dict

    data = make_image_folder(root / "data", classes=("cat", "dog", "fox"), per_class=8, seed=0)
    spec = tiny_spec_dict(data, root / "job", epochs=1, finetune="head")
    result = run_job(build_spec(spec), progress=False)
    if result.get("status") != "Completed":
        raise RuntimeError(f"the tiny job failed: {result.get('status')} {result.get('failure_reason')}")
    load_served_model(root / "job")  # the backbone's ONNX export, made once, before the server starts
    return root / "job"


def good_jpegs(job: Path, scratch: Path, limit: int = 64) -> list[bytes]:
    """JPEGs of the job's own data when it names a folder with some, else generated ones."""
    import yaml

    root = None
    with contextlib.suppress(OSError, yaml.YAMLError, TypeError, KeyError):
        root = Path(yaml.safe_load((job / "spec.yaml").read_text())["data"]["root"])
    files = sorted(root.rglob("*.jpg"))[:limit] if root is not None and root.is_dir() else []
    if not files:
        from vizsla.testing.images import make_image_folder

        files = sorted(
            make_image_folder(scratch / "payloads", classes=("a", "b"), per_class=8).rglob("*.jpg")
        )
    return [path.read_bytes() for path in files]


@dataclass(frozen=True)
class Payload:
    kind: str
    path: str
    body: bytes
    content_type: str


def bad_payloads(good: bytes, max_payload: int, name: str) -> list[Payload]:
    """One of each bad request: every one is the client's fault (4xx expected)."""
    b64 = base64.b64encode(good).decode()
    infer = f"/v2/models/{name}/infer"

    def v2(**item: Any) -> bytes:
        base = {"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64]}
        return json.dumps({"inputs": [{**base, **item}]}).encode()

    return [
        Payload("bad-jpeg", "/invocations", b"\xff\xd8\xff\xe0" + bytes(2000), "image/jpeg"),
        Payload("wrong-type", "/invocations", b"hello, not an image", "text/plain"),
        Payload("oversized", "/invocations", b"\xff\xd8\xff" + bytes(max_payload), "image/jpeg"),
        Payload("deep-json", "/invocations", b"[" * 100_000 + b"]" * 100_000, "application/json"),
        Payload("bad-v2", infer, v2(name="pixels"), "application/json"),
        Payload("bad-v2", infer, v2(shape=[2], data=[[b64], [b64]]), "application/json"),
        Payload("bad-v2", infer, v2(data=["not base64!"]), "application/json"),
    ]


# ---------------------------------------------------------------- the clients


@dataclass
class Load:
    """Answers of one phase: good-request latencies (s) and answers by payload kind and class."""

    latencies: list[float] = field(default_factory=list)
    classes: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    wall_s: float = 0.0

    def record(self, kind: str, klass: str) -> None:
        self.classes[klass] += 1
        self.by_kind[kind][klass] += 1

    @property
    def good_rate(self) -> float:
        return len(self.latencies) / self.wall_s if self.wall_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


async def drive(url: str, clients: int, seconds: float, pick: Any) -> Load:
    """CLIENTS connections sending PICK()'s payloads for SECONDS; every answer classified."""
    import httpx

    load = Load()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=REQUEST_TIMEOUT_S) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def one_client() -> None:
            while time.perf_counter() < deadline:
                payload = pick()
                sent = time.perf_counter()
                try:
                    reply = await client.post(
                        payload.path, content=payload.body, headers={"Content-Type": payload.content_type}
                    )
                except httpx.HTTPError:
                    load.record(payload.kind, "connection error")
                    continue
                load.record(payload.kind, f"{reply.status_code // 100}xx")
                if payload.kind == "good" and reply.status_code == 200:
                    load.latencies.append(time.perf_counter() - sent)

        await asyncio.gather(*(one_client() for _ in range(clients)))
        load.wall_s = time.perf_counter() - started
    return load


@dataclass
class Bounds:
    header_s: float
    idle_s: float
    body_s: float
    rate: float  # bytes/s

    def of(self, kind: str) -> float:
        if kind in ("headers", "silent"):
            return self.header_s
        if kind == "body-stall":
            return self.idle_s
        return self.body_s + ANNOUNCED / self.rate


@dataclass
class Cut:
    kind: str
    lasted_s: float
    bound_s: float
    answer: str  # the status line the server sent before closing, or how the connection ended
    cut: bool = True  # False: still open when the soak ended


def _head(length: int | None) -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else ""
    return f"POST /invocations HTTP/1.1\r\nHost: soak\r\nContent-Type: image/jpeg\r\n{size}\r\n".encode()


async def _misbehave(kind: str, writer: asyncio.StreamWriter, bounds: Bounds) -> None:
    """What a slow client of KIND sends; it never completes a request."""
    if kind == "headers":
        tick = min(1.0, bounds.header_s / 5)
        for byte in _head(None)[:-2]:  # never the blank line
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(tick)
    elif kind in ("body-stall", "body-trickle"):
        writer.write(_head(ANNOUNCED) + b"\xff\xd8\xff" + b"0" * 7)
        await writer.drain()
        if kind == "body-trickle":
            for _ in range(ANNOUNCED - 11):
                await asyncio.sleep(bounds.idle_s / 2)
                writer.write(b"0")
                await writer.drain()
    await asyncio.Event().wait()  # silent, or done sending: wait to be cut off


async def slow_client(index: int, port: int, bounds: Bounds, stop_at: float, cuts: list[Cut]) -> None:
    """Misbehave, get cut off, record how long it took, again until STOP_AT."""
    loop = asyncio.get_running_loop()
    kind = SLOW_KINDS[index % len(SLOW_KINDS)]
    while loop.time() < stop_at:
        started = loop.time()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            cuts.append(Cut(kind, 0.0, bounds.of(kind), f"connect failed: {exc}"))
            await asyncio.sleep(0.5)
            continue
        sender = loop.create_task(_misbehave(kind, writer, bounds))
        answer = b""
        try:
            remaining = stop_at - loop.time()
            async with asyncio.timeout(max(0.0, remaining)):
                while chunk := await reader.read(65536):
                    answer += chunk
            first = answer.split(b"\r\n", 1)[0].decode("latin-1") or "closed without an answer"
            cuts.append(Cut(kind, loop.time() - started, bounds.of(kind), first))
        except TimeoutError:  # the soak ended first
            cuts.append(Cut(kind, loop.time() - started, bounds.of(kind), "open at the end", cut=False))
        except OSError as exc:
            cuts.append(Cut(kind, loop.time() - started, bounds.of(kind), f"{type(exc).__name__}"))
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sender
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


# ---------------------------------------------------------------- memory


def rss_mib(pid: int) -> float:
    """RSS of the server process and its children (workers), MiB."""
    import psutil

    try:
        process = psutil.Process(pid)
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
    except psutil.Error:
        return float("nan")
    return total / MIB


async def sample_rss(pid: int, period_s: float, started: float, samples: list[tuple[float, float]]) -> None:
    while True:
        samples.append((time.perf_counter() - started, rss_mib(pid)))
        await asyncio.sleep(period_s)


# ---------------------------------------------------------------- the phases


async def soak(server: Server, good: list[bytes], bad: list[Payload], args: Any) -> dict[str, Any]:
    rng = random.Random(args.seed)
    goods = [Payload("good", "/invocations", body, "image/jpeg") for body in good]

    def pick_good() -> Payload:
        return rng.choice(goods)

    def pick_mixed() -> Payload:
        return rng.choice(bad) if rng.random() < args.bad_fraction else rng.choice(goods)

    assert server.proc is not None
    warm_s = min(5.0, args.baseline_duration / 2)
    await drive(server.url, args.clients, warm_s, pick_good)  # warm-up, not counted
    baseline = await drive(server.url, args.clients, args.baseline_duration, pick_good)
    print(_phase_line("baseline", baseline), flush=True)
    bounds = Bounds(args.header_timeout, args.body_idle_timeout, args.body_timeout, args.body_min_rate * 1024)
    loop = asyncio.get_running_loop()
    cuts: list[Cut] = []
    samples: list[tuple[float, float]] = []
    started = time.perf_counter()
    sampler = loop.create_task(sample_rss(server.proc.pid, args.sample_s, started, samples))
    stop_at = loop.time() + args.duration
    slow = [loop.create_task(slow_client(i, server.port, bounds, stop_at, cuts)) for i in range(args.slow)]
    loaded = await drive(server.url, args.clients, args.duration, pick_mixed)
    await asyncio.gather(*slow)
    samples.append((time.perf_counter() - started, rss_mib(server.proc.pid)))
    sampler.cancel()
    print(_phase_line("soak", loaded), flush=True)
    return {"baseline": baseline, "soak": loaded, "cuts": cuts, "samples": samples, "bounds": bounds}


def _phase_line(name: str, load: Load) -> str:
    classes = ", ".join(f"{k} {v}" for k, v in sorted(load.classes.items()))
    return (
        f"{name}: {load.wall_s:.0f} s, {load.good_rate:.1f} good req/s, "
        f"good p50 {load.percentile_ms(50):.1f} ms, p99 {load.percentile_ms(99):.1f} ms; answers: {classes}"
    )


# ---------------------------------------------------------------- the report


def _md(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _num(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


RESULT_CLASSES = ("2xx", "4xx", "5xx", "connection error")


def report(result: dict[str, Any], args: Any) -> None:
    """The soak's tables (load vs baseline, answers by payload, slow clients, RSS) and its targets."""
    rss = print_load_table(result, args)
    print_slow_clients(result)
    print_targets(result, rss)


def _ratio(a: float, b: float) -> str:
    return _num(a / b, 2) if b and not math.isnan(a) and not math.isnan(b) else "n/a"


def print_load_table(result: dict[str, Any], args: Any) -> tuple[float, float, float]:
    """Good-request rate and latency, answer classes and RSS, soak vs baseline; returns the server's RSS
    (MiB) after warm-up, its maximum and its final value."""
    base: Load = result["baseline"]
    load: Load = result["soak"]
    samples: list[tuple[float, float]] = result["samples"]
    classes = RESULT_CLASSES
    warm = [rss for t, rss in samples if t >= 0.1 * args.duration]
    warm_rss = warm[0] if warm else float("nan")
    after = warm or [float("nan")]
    final_rss, max_rss = after[-1], max(after)
    rows = [
        ["metric", f"baseline ({args.clients} clients, good only)", "soak", "soak/baseline"],
        [
            "good requests/s",
            _num(base.good_rate),
            _num(load.good_rate),
            _ratio(load.good_rate, base.good_rate),
        ],
    ]
    for q in (50, 99):
        b, s = base.percentile_ms(q), load.percentile_ms(q)
        rows.append([f"good p{q} (ms)", _num(b), _num(s), _ratio(s, b)])
    for klass in classes:
        rows.append([f"answers {klass}", str(base.classes[klass]), str(load.classes[klass]), ""])
    rows.append(
        [
            "server RSS after warm-up / max / final (MiB)",
            "",
            f"{_num(warm_rss)} / {_num(max_rss)} / {_num(final_rss)}",
            _ratio(final_rss, warm_rss),
        ]
    )
    title = (
        f"Soak: {args.duration:g} s, {args.clients} clients, {100 * args.bad_fraction:g}% bad payloads, "
        f"{args.slow} slow clients"
    )
    print(f"\n### {title}\n\n{_md(rows)}")

    kinds = [["payload", "sent", *classes]]
    for kind in sorted(load.by_kind, key=lambda k: (k != "good", k)):
        counts = load.by_kind[kind]
        kinds.append([kind, str(sum(counts.values())), *(str(counts[c]) for c in classes)])
    print(f"\n### Soak answers by payload\n\n{_md(kinds)}")
    timeline = ", ".join(f"{t:.0f}s {rss:.0f}" for t, rss in _thin(samples, 24))
    print(f"\nserver RSS (MiB) over the soak: {timeline}\n", flush=True)
    return warm_rss, max_rss, final_rss


def print_slow_clients(result: dict[str, Any]) -> None:
    """How long each kind of slow client lasted before the server cut it off, against its bound."""
    cuts: list[Cut] = result["cuts"]

    slow_rows = [
        [
            "slow client",
            "cut off",
            "lasted min / median / max (s)",
            "bound (s)",
            "within bound",
            "open at end",
            "answers",
        ]
    ]
    for kind in SLOW_KINDS:
        done = [c for c in cuts if c.kind == kind and c.cut]
        still = [c for c in cuts if c.kind == kind and not c.cut]
        bound = result["bounds"].of(kind)
        if not done and not still:
            continue
        lasted = [c.lasted_s for c in done]
        spread = f"{min(lasted):.1f} / {statistics.median(lasted):.1f} / {max(lasted):.1f}" if lasted else "-"
        within = sum(c.lasted_s <= c.bound_s + SLACK_S for c in done)
        answers = ", ".join(f"{a} x{n}" for a, n in Counter(c.answer for c in done).most_common(2))
        late = sum(c.lasted_s > c.bound_s + SLACK_S for c in still)
        slow_rows.append(
            [
                kind,
                str(len(done)),
                spread,
                f"{bound:.1f}",
                f"{within}/{len(done)}",
                f"{len(still)}" + (f" ({late} past bound)" if late else ""),
                answers or "-",
            ]
        )
    print(f"\n### Slow clients (cut off within bound = at most {SLACK_S:g} s after it)\n\n{_md(slow_rows)}")



def print_targets(result: dict[str, Any], rss: tuple[float, float, float]) -> None:
    """MET / MISSED for 0 5xx, p99 vs baseline, flat RSS and slow clients cut within their bound."""
    base: Load = result["baseline"]
    load: Load = result["soak"]
    cuts: list[Cut] = result["cuts"]
    warm_rss, max_rss, final_rss = rss
    fives = load.classes["5xx"] + base.classes["5xx"]
    print(f"target 0 5xx answers: {'MET' if fives == 0 else 'MISSED'} (measured {fives})")
    p99_ratio = load.percentile_ms(99) / base.percentile_ms(99) if base.latencies else float("nan")
    met = not math.isnan(p99_ratio) and p99_ratio <= P99_TARGET
    print(
        f"target good p99 soak/baseline <= {P99_TARGET:g}: {'MET' if met else 'MISSED'} "
        f"(measured {p99_ratio:.2f}: {load.percentile_ms(99):.1f} ms vs {base.percentile_ms(99):.1f} ms)"
    )
    growth = final_rss / warm_rss - 1 if warm_rss else float("nan")
    flat = not math.isnan(growth) and growth <= RSS_GROWTH_TARGET
    print(
        f"target server RSS flat after warm-up (final <= {1 + RSS_GROWTH_TARGET:g} x warm-up): "
        f"{'MET' if flat else 'MISSED'} (measured {warm_rss:.0f} -> {final_rss:.0f} MiB, max {max_rss:.0f})"
    )
    done = [c for c in cuts if c.cut]
    late = [c for c in cuts if c.lasted_s > c.bound_s + SLACK_S]
    ok = bool(done) and not late
    print(
        f"target every slow client cut off within its bound: {'MET' if ok else 'MISSED'} "
        f"({len(done) - sum(c.cut for c in late)}/{len(done)} cut-offs within bound"
        f"{f', {len(late)} past it' if late else ''}{'' if done else ', no cut-off observed'})",
        flush=True,
    )


def _thin(samples: list[tuple[float, float]], most: int) -> list[tuple[float, float]]:
    if len(samples) <= most:
        return samples
    step = (len(samples) - 1) / (most - 1)
    return [samples[round(i * step)] for i in range(most)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print_header("Benchmark: soak, `vizsla serve` with bad payloads and slow clients")
    with work_dir("vizsla-bench-soak-") as tmp, fresh_cache_dir("vizsla-bench-soak-cache-"):
        started = time.perf_counter()
        job = Path(args.job) if args.job else tiny_job(tmp)
        if not args.job:
            took = time.perf_counter() - started
            print(f"job: the tiny head-only job trained and exported in {took:.1f} s", flush=True)
        good = good_jpegs(job, tmp)
        max_payload = int(args.max_payload_mb * MIB)
        bad = bad_payloads(good[0], max_payload, "model")
        serve = [sys.executable, "-m", "vizsla", "serve", str(job), "--host", "127.0.0.1"]
        serve += [
            "--header-timeout",
            str(args.header_timeout),
            "--body-idle-timeout",
            str(args.body_idle_timeout),
        ]
        serve += ["--body-timeout", str(args.body_timeout), "--body-min-rate", str(args.body_min_rate)]
        serve += ["--max-payload-mb", str(args.max_payload_mb), *args.serve_arg]
        print_config("server", {"command": " ".join(serve[1:]), "job": job})
        print_config(
            "load",
            {
                "client": "asyncio + httpx",
                "clients": args.clients,
                "duration_s": args.duration,
                "baseline_s": args.baseline_duration,
                "bad_fraction": args.bad_fraction,
                "bad kinds": ",".join(sorted({p.kind for p in bad})),
                "slow clients": args.slow,
                "slow kinds": ",".join(SLOW_KINDS),
                "good images": len(good),
                "rss sample_s": args.sample_s,
            },
        )
        port = free_port()
        server = Server("vizsla serve", [*serve, "--port", str(port)], port, tmp / "serve.log")
        with running(server):
            result = asyncio.run(soak(server, good, bad, args))
            log = server.log_text()
        tracebacks = log.count("Traceback (most recent call last)")
        print(f"server log: {len(log.splitlines())} lines, {tracebacks} tracebacks", flush=True)
    report(result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
