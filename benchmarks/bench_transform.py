"""Benchmark: `vizsla transform` vs posting the photos to `vizsla serve` (8 clients) vs a plain PyTorch loop.

The model: a head-only efficientnet_lite0 job (defaults, feature cache) trained first on --data (default
../shared/datasets/flowers102), unless --job names a finished one. The photos: every image of the data
folder (all splits; flowers102: 8,189), or --limit N of them spread over it. Three sides, one after the
other, each on the same photos:
- ours: `vizsla transform JOB --data <photos> --output <tmp>` as a subprocess (the CLI a user runs);
  images/s is the transform's own figure (summary.json: the loop, model loading excluded), the wall time
  with start-up is printed too;
- serve: `vizsla serve JOB` (bench_serving.py's server runner) and 8 concurrent clients posting each photo
  once (bench_serving.py's load client), after a warm-up: answers/s; once at serve's default runtime
  (the target's baseline) and once at the runtime the transform chose (the same model on both sides);
- plain: torchvision ImageFolder (PIL decode, Resize + CenterCrop + ToTensor + Normalize from the model's
  preprocessing) + DataLoader (batch 32, one worker a core) + the job's model in eval mode under
  inference_mode, as a script scoring a folder is usually written: images/s.
Accuracy on the test split (predicted label vs class folder) is printed for each side beside the job's
own test accuracy (with --limit, a sample of the test split: near, not equal). Targets (issue 21): ours
>= 2x serve, ours >= 3x plain, accuracy equal to the job's.

    python benchmarks/bench_transform.py [--data DIR] [--job DIR] [--limit N] [--clients 8] [--quick]
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_serving import Server, drive, free_port, running
from common import (
    SHARED_DATASETS,
    Row,
    base_parser,
    check_accuracy,
    check_target,
    find_split,
    ours_spec,
    print_config,
    print_header,
    print_table,
    work_dir,
)

SERVE_TARGET = 2.0
PLAIN_TARGET = 3.0
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.set_defaults(data=str(SHARED_DATASETS / "flowers102"))
    parser.add_argument("--job", default=None, help="a finished job to use instead of training one")
    parser.add_argument("--limit", type=int, default=0, help="use N photos spread over the folder (0: all)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients posting to the server")
    parser.add_argument("--batch-size", type=int, default=32, help="the plain loop's DataLoader batch")
    parser.add_argument("--quick", action="store_true", help="a smoke run: --limit 300 unless given")
    args = parser.parse_args(argv)
    if args.quick and not args.limit:
        args.limit = 300
    return args


def photos(root: Path, limit: int) -> list[Path]:
    """Every image under ROOT in name order, or LIMIT of them spread over it (so over splits and classes)."""
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit and len(found) > limit:
        found = [found[i * len(found) // limit] for i in range(limit)]
    return found


def train(root: Path, output: Path) -> Path:
    """A head-only job with the defaults (feature cache on, tracking off)."""
    from vizsla.jobs import run_job

    started = time.perf_counter()
    result = run_job(ours_spec(root, output, train={"finetune": "head", "seed": 0}), progress=False)
    if result.get("status") != "Completed":
        raise SystemExit(f"training failed: {result.get('status')} {result.get('failure_reason')}")
    print(f"trained {output} in {time.perf_counter() - started:.0f} s: {result.get('metrics')}", flush=True)
    return output


def job_test_accuracy(job: Path) -> float:
    metrics = json.loads((job / "result.json").read_text()).get("metrics") or {}
    return float(metrics.get("test_accuracy", float("nan")))


def truth(root: Path, path: Path) -> str | None:
    """The class of a test-split photo (its folder's name), None for other splits (no test split, as in
    hymenoptera: the validation split, which the job then tests on too)."""
    test = find_split(root, "test") or find_split(root, "valid")
    if test is None or test not in path.parents:
        return None
    return path.parent.name


def accuracy(root: Path, predicted: dict[Path, str]) -> float:
    """Top-1 accuracy over the test-split photos in PREDICTED."""
    pairs = [(truth(root, p), label) for p, label in predicted.items() if truth(root, p) is not None]
    return sum(t == label for t, label in pairs) / len(pairs) if pairs else float("nan")


def run_ours(job: Path, root: Path, files: list[Path], tmp: Path) -> tuple[float, dict[Path, str], str]:
    """`vizsla transform` over FILES (a CSV of paths) at its defaults: its images/s, the predicted label
    per photo and the runtime it chose."""
    listing = tmp / "photos.csv"
    listing.write_text("path\n" + "".join(f"{p}\n" for p in files))
    out = tmp / "transform-out"
    command = [sys.executable, "-m", "vizsla", "transform", str(job), "--data", str(listing),
               "--output", str(out), "--quiet"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"vizsla transform failed:\n{done.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    print(f"ours: {summary['predicted']} predicted, {summary['rejected']} rejected, "
          f"{summary['images_per_s']} images/s ({summary['runtime']}, batch {summary['batch_size']}); "
          f"{wall:.1f} s wall with start-up", flush=True)
    base = Path(os.path.commonpath([str(p.parent) for p in files]))
    predicted = {}
    for line in (out / "predictions.jsonl").read_text().splitlines():
        row = json.loads(line)
        predicted[base / row["path"]] = row["label"]
    return float(summary["images_per_s"]), predicted, str(summary["runtime"])


class Payloads:
    """(name, bytes) of each photo, read when a client sends it (8,189 photos stay on disk)."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[str, bytes]:
        return str(self.files[index]), self.files[index].read_bytes()


def run_serve(job: Path, files: list[Path], clients: int, tmp: Path,
              runtime: str = "onnx") -> tuple[float, dict[Path, str]]:
    """Answers/s of `vizsla serve --runtime RUNTIME` with CLIENTS posting every photo once (after a
    warm-up)."""
    port = free_port()
    server = Server("serve", [sys.executable, "-m", "vizsla", "serve", str(job), "--port", str(port),
                              "--runtime", runtime], port, tmp / f"serve-{runtime}.log")
    payloads = Payloads(files)
    with running(server):
        asyncio.run(drive(server.url, payloads, clients, 4 * clients, 600))  # warm-up, not counted
        result = asyncio.run(drive(server.url, payloads, clients, len(files), 3600))
    print(f"serve ({runtime}) at {clients} clients: {result.ok} ok, {sum(result.errors.values())} failed in "
          f"{result.wall_s:.1f} s -> {result.throughput:.1f} images/s", flush=True)
    return result.throughput, {Path(name): label for name, label in result.top1.items()}


def run_plain(job: Path, files: list[Path], batch_size: int) -> tuple[float, dict[Path, str]]:
    """A plain PyTorch loop: ImageFolder + DataLoader + eval forward; images/s and labels per photo."""
    import torch
    from torch.utils.data import ConcatDataset, DataLoader, Subset
    from torchvision import datasets, transforms

    from vizsla.data.transforms import eval_resize_size
    from vizsla.infra.hardware import available_cores
    from vizsla.models.io import load_model

    model = load_model(job)
    pre = model.preprocessing
    tf = transforms.Compose([
        transforms.Resize(eval_resize_size(pre)), transforms.CenterCrop(tuple(pre["input_size"][1:])),
        transforms.ToTensor(), transforms.Normalize(pre["mean"], pre["std"]),
    ])
    wanted = {str(p) for p in files}
    parts, paths = [], []
    for folder in sorted({p.parent.parent for p in files}):
        dataset = datasets.ImageFolder(str(folder), transform=tf)
        keep = [i for i, (path, _) in enumerate(dataset.samples) if path in wanted]
        parts.append(Subset(dataset, keep))
        paths += [Path(dataset.samples[i][0]) for i in keep]
    loader = DataLoader(ConcatDataset(parts), batch_size=batch_size, num_workers=available_cores())
    predicted: list[int] = []
    started = time.perf_counter()
    with torch.inference_mode():
        for images, _ in loader:
            predicted += model(images).argmax(1).tolist()
    seconds = time.perf_counter() - started
    rate = len(predicted) / seconds
    print(f"plain: {len(predicted)} images in {seconds:.1f} s -> {rate:.1f} images/s", flush=True)
    return rate, {path: model.labels[i] for path, i in zip(paths, predicted, strict=True)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(args.data).resolve()
    if not root.is_dir():
        raise SystemExit(f"no dataset at {root}: pass --data DIR")
    print_header("batch transform vs serve vs a plain PyTorch loop", (root, root.name))
    files = photos(root, args.limit)
    print_config("photos", {"count": len(files), "limit": args.limit or "all"})
    print_config("serve", {"clients": args.clients})
    print_config("plain", {"batch_size": args.batch_size, "workers": len(os.sched_getaffinity(0))})
    with work_dir() as tmp:
        job = Path(args.job) if args.job else train(root, tmp / "job")
        ours, ours_labels, ours_runtime = run_ours(job, root, files, tmp)
        serve, serve_labels = run_serve(job, files, args.clients, tmp)  # its default runtime
        same, same_labels = run_serve(job, files, args.clients, tmp, ours_runtime)  # the transform's
        plain, plain_labels = run_plain(job, files, args.batch_size)
        reference = job_test_accuracy(job)
        accuracies = {name: accuracy(root, labels) for name, labels in
                      (("ours", ours_labels), ("serve", serve_labels), ("same", same_labels),
                       ("plain", plain_labels))}
    print_table("images/s on the same photos", [
        Row("transform vs serve (8 clients)", ours, serve, "images/s"),
        Row(f"transform vs serve --runtime {ours_runtime}", ours, same, "images/s"),
        Row("transform vs plain PyTorch loop", ours, plain, "images/s"),
        Row("test accuracy: transform vs the job's", accuracies["ours"], reference, kind="accuracy"),
        Row("test accuracy: plain loop vs the job's", accuracies["plain"], reference, kind="accuracy"),
        Row("test accuracy: serve vs the job's", accuracies["serve"], reference, kind="accuracy"),
        Row(f"test accuracy: serve --runtime {ours_runtime} vs the job's", accuracies["same"], reference,
            kind="accuracy"),
    ])
    check_target("transform images/s / serve images/s", ours / serve if serve else 0.0, SERVE_TARGET)
    check_target("transform images/s / plain loop images/s", ours / plain if plain else 0.0, PLAIN_TARGET)
    check_accuracy("transform test accuracy equal to the job's", accuracies["ours"], reference, 0.005)
    return 0


if __name__ == "__main__":
    sys.exit(main())
