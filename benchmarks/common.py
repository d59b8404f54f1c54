"""Shared benchmark plumbing: dataset choice, machine description, timer, cold caches and result tables.

Stable API (bench_finetune.py and bench_data.py import it; keep these signatures):

    REPO_ROOT: Path                          the project root (benchmarks/..)
    pick_dataset(prefer=None) -> (Path, str) hymenoptera from ../shared/datasets, else generated digits;
                                             prefer: a folder, "hymenoptera" or "digits" (forces digits)
    find_split(root, kind) -> Path | None    a split folder by kind "train" | "valid" | "test"
    flips_ok(name) -> bool                   False for digits: mirrored digits are other symbols
    describe_machine() -> dict[str, str]     CPU model, cores, bf16, torch/timm/torchvision/onnxruntime
    machine_lines() -> list[str]             the same as "key: value" lines
    warm_up_imports() -> None                import torch/timm/vizsla once, outside any timed region
    Timer                                    `with Timer() as t: ...; t.seconds`
    fresh_cache_dir(prefix="vizsla-bench-") contextmanager: a new empty VIZSLA_CACHE_DIR, removed after
    work_dir(prefix="vizsla-bench-")        contextmanager: a temporary folder for job outputs
    Row(metric, ours, baseline, unit="", kind="speed"|"time"|"accuracy"|"info")
    format_table(title, rows) -> str         side-by-side table: ours, baseline, ours/baseline, verdict
    print_table(title, rows) -> None
    print_config(name, mapping) -> None      one "name: key=value, ..." line
    print_header(title, dataset=(root, name)) -> None   the script's banner with machine and dataset
    check_target(label, measured, target) -> bool       prints "target ...: MET/MISSED (measured ...)"
    check_accuracy(label, ours, baseline, tolerance=0.01) -> bool
                                             prints "target ...: MET/MISSED" (ours >= baseline - tolerance)
    base_parser(description) -> argparse.ArgumentParser with --data
    ours_spec(root, output, *, model="efficientnet_lite0", data=None, train=None, model_options=None,
              cache_dir=None) -> JobSpec
                                             a vizsla job spec with tracking off (the baseline has none)
    cache_summary(cache_root) -> str         what the feature cache folder holds (files, MiB)
    cache_status(result) -> str              a job result's feature cache: "not used", "hit ...", "built in"

A Row's ratio is always ours/baseline. For "time" rows (lower is better) the table also prints the speed-up
baseline/ours; for "speed" rows (images/s) ours/baseline is the speed-up; for "accuracy" rows it prints the
difference in points.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"
BENCH_DATA = REPO_ROOT / "runs" / "bench-data"
SPLIT_NAMES = {
    "train": ("train", "training"),
    "valid": ("valid", "val", "validation", "dev"),
    "test": ("test", "testing"),
}

# Benchmarks never reach for a model hub: weights come from installed packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pick_dataset(prefer: str | None = None) -> tuple[Path, str]:
    """Hymenoptera photos when ../shared/datasets has them, else the generated digits (made once)."""
    if prefer and Path(prefer).is_dir():
        path = Path(prefer).resolve()
        return path, path.name
    hymenoptera = SHARED_DATASETS / "hymenoptera"
    if prefer in (None, "hymenoptera") and hymenoptera.is_dir():
        return hymenoptera.resolve(), "hymenoptera"
    from vizsla.data.digits import create_digits

    digits = BENCH_DATA / "digits"
    create_digits(digits)
    return digits.resolve(), "digits"


def flips_ok(dataset_name: str) -> bool:
    """Whether horizontal flips are a fair augmentation: not for digits (a mirrored 2 is no digit)."""
    return dataset_name != "digits"


def find_split(root: Path, kind: str) -> Path | None:
    """The split folder of ROOT for kind train/valid/test under any usual spelling, case-insensitive."""
    names = SPLIT_NAMES[kind]
    for child in sorted(Path(root).iterdir()):
        if child.is_dir() and child.name.lower() in names:
            return child
    return None


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty off Linux)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _memory_gib() -> str:
    try:
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        return "unknown"
    return f"{kib / 2**20:.1f} GiB"


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except ImportError:
        return "not installed"


def describe_machine() -> dict[str, str]:
    """What the figures were measured on: CPU, usable cores, bf16 support, library versions."""
    import torch

    from vizsla.infra.hardware import cpu_supports_bf16

    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    isa = [name for name in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if name in flags]
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "cpu id": f"{info.get('vendor_id', '?')} family {info.get('cpu family', '?')} "
        f"model {info.get('model', '?')} stepping {info.get('stepping', '?')}",
        "cores (usable)": str(len(os.sched_getaffinity(0))),
        "cpu flags": " ".join(isa) or "unknown",
        "native bf16 (oneDNN)": str(cpu_supports_bf16()),
        "memory": _memory_gib(),
        "torch threads": str(torch.get_num_threads()),
        "gpu": cuda,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "timm": _version("timm"),
        "onnxruntime": _version("onnxruntime"),
        "optuna": _version("optuna"),
        "os": f"{platform.system()} {platform.release()}",
    }


def machine_lines() -> list[str]:
    return [f"{key}: {value}" for key, value in describe_machine().items()]


def warm_up_imports() -> None:
    """Import the heavy libraries once so neither side of a comparison pays their ~4 s import cost."""
    import timm  # noqa: F401
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    import vizsla.data.prepare  # noqa: F401
    import vizsla.models.classifier  # noqa: F401
    import vizsla.training.trainer  # noqa: F401


class Timer:
    """Wall-clock seconds of a `with` block (perf_counter)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


@contextlib.contextmanager
def fresh_cache_dir(prefix: str = "vizsla-bench-cache-") -> Iterator[Path]:
    """A new, empty VIZSLA_CACHE_DIR for one 'ours' run, so every cache it uses is built inside the timing.

    Its `vizsla train` commands start their resident worker as a user's would (vizsla.resident), in a
    runtime folder of this run's own; the workers are stopped on the way out, so none outlives the run."""
    from vizsla.resident import control

    previous = {name: os.environ.get(name) for name in ("VIZSLA_CACHE_DIR", "VIZSLA_RUNTIME_DIR")}
    path = Path(tempfile.mkdtemp(prefix=prefix))
    runtime = Path(tempfile.mkdtemp(prefix="vizsla-bench-run-"))
    os.environ["VIZSLA_CACHE_DIR"] = str(path)
    os.environ["VIZSLA_RUNTIME_DIR"] = str(runtime)
    try:
        yield path
    finally:
        control.stop(runtime)
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)


@contextlib.contextmanager
def work_dir(prefix: str = "vizsla-bench-") -> Iterator[Path]:
    """A temporary folder for job outputs, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Row:
    """One measured quantity on both sides; kind says how to read the ratio."""

    metric: str
    ours: float
    baseline: float
    unit: str = ""
    kind: str = "speed"  # speed (higher is better) | time (lower is better) | accuracy | info

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")

    def verdict(self) -> str:
        if self.kind == "time":
            if self.ours <= 0 or self.baseline <= 0:
                return ""
            speedup = self.baseline / self.ours
            return f"{speedup:.1f}x faster" if speedup >= 1 else f"{1 / speedup:.1f}x slower"
        if self.kind == "speed":
            return f"{self.ratio:.2f}x the baseline's rate"
        if self.kind == "accuracy":
            return f"{100 * (self.ours - self.baseline):+.1f} points"
        return ""


def _fmt(value: float, kind: str) -> str:
    if kind == "accuracy":
        return f"{100 * value:.2f}%"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def format_table(title: str, rows: list[Row]) -> str:
    """A fixed-width side-by-side table: metric, ours, baseline, ours/baseline and what that means."""
    header = ("metric", "ours", "baseline", "ours/baseline", "")
    body = [
        (
            f"{row.metric}" + (f" ({row.unit})" if row.unit else ""),
            _fmt(row.ours, row.kind),
            _fmt(row.baseline, row.kind),
            "" if row.kind == "accuracy" else f"{row.ratio:.3f}",
            row.verdict(),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [title, "-" * len(title)]
    for line in [header, *body]:
        right = [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        cells = [line[0].ljust(widths[0]), *right]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def print_table(title: str, rows: list[Row]) -> None:
    print("\n" + format_table(title, rows), flush=True)


def print_config(name: str, mapping: Mapping[str, Any]) -> None:
    print(f"{name}: " + ", ".join(f"{key}={value}" for key, value in mapping.items()), flush=True)


def print_header(title: str, dataset: tuple[Path, str] | None = None) -> None:
    """The banner every benchmark prints first: what runs, on which machine, on which data."""
    print(f"== {title} ==")
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    for line in machine_lines():
        print(f"  {line}")
    if dataset is not None:
        print(f"dataset: {dataset[1]} ({dataset[0]})")
    print(flush=True)


def check_target(label: str, measured: float, target: float) -> bool:
    """Print whether a measured figure reaches the issue's target; the figure is always the measured one."""
    met = measured >= target
    print(f"target {label} >= {target:g}: {'MET' if met else 'MISSED'} (measured {measured:.2f})", flush=True)
    return met


def ours_spec(root: Path, output: Path, *, model: str = "efficientnet_lite0",
              data: Mapping[str, Any] | None = None, train: Mapping[str, Any] | None = None,
              model_options: Mapping[str, Any] | None = None, cache_dir: Path | None = None) -> Any:
    """Our job spec for a benchmark: pretrained weights, tracking off, progress bars off by the caller."""
    from vizsla.spec import build_spec

    return build_spec({
        "output": str(output),
        "data": {"root": str(root), **(data or {})},
        "model": {"name": model, "weights": "auto", **(model_options or {})},
        "train": dict(train or {}),
        "tracking": {"enabled": False},
        "cache_dir": str(cache_dir) if cache_dir else None,
    })


def cache_status(result: Mapping[str, Any]) -> str:
    """What the job says about its feature cache: not used, hit, or built (in how long, on what)."""
    info = result.get("feature_cache")
    if not info:
        return "not used"
    if info.get("hit"):
        return f"hit ({info.get('backend')} {info.get('precision')}, {info.get('views')} view(s))"
    return (f"built in {info.get('build_s', 0.0):.2f} s ({info.get('backend')} {info.get('precision')}, "
            f"{info.get('views')} view(s))")


def cache_summary(cache_root: Path) -> str:
    """Files and size under CACHE_ROOT/features: shows whether a run built a feature cache."""
    features = Path(cache_root) / "features"
    files = [p for p in features.rglob("*") if p.is_file()] if features.is_dir() else []
    size = sum(p.stat().st_size for p in files) / 2**20
    return f"{features}: {len(files)} files, {size:.1f} MiB" if files else f"{features}: empty"


def check_accuracy(label: str, ours: float, baseline: float, tolerance: float = 0.01) -> bool:
    """Print whether ours' accuracy (0..1) is at most TOLERANCE below the baseline's: speed hides no loss."""
    met = ours >= baseline - tolerance - 1e-12
    print(f"target {label}: ours {100 * ours:.2f}% vs baseline {100 * baseline:.2f}% "
          f"({100 * (ours - baseline):+.2f} points, at most {100 * tolerance:g} below): "
          f"{'MET' if met else 'MISSED'}", flush=True)
    return met


def base_parser(description: str) -> argparse.ArgumentParser:
    """Options every benchmark takes: --data (an image folder; default hymenoptera, else digits)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--data",
        default=None,
        help="image folder with train/ and val(id)/ splits; default: ../shared/datasets/hymenoptera "
        "when present, else generated digits in runs/bench-data",
    )
    return parser
