"""Benchmark 4: is data ever the bottleneck? Data pipeline images/s per core vs model images/s.

Data: decode + resize/crop + to-tensor + normalise of the train photos, one image at a time in one process
with one thread (what one loader worker does), for our train and eval transforms with and without JPEG
draft decoding, and for the tutorial's transforms (the baseline). Per-core rates use process CPU time, so
other jobs on a shared machine do not skew them. Model: a train step (forward + backward + AdamW, batch 32)
and inference, with our auto runtime and with the baseline's fp32 NCHW, on all cores (wall time). Then the
real loader with 0, 1 and 2 workers feeds the model, and each line says whether data or model limits it.

    python benchmarks/bench_data.py [--model efficientnet_lite0] [--size 224] [--images 120] [--data DIR]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from baseline import tutorial_transforms
from common import (
    Row,
    base_parser,
    find_split,
    ours_spec,
    pick_dataset,
    print_config,
    print_header,
    print_table,
    warm_up_imports,
)

BATCH = 32
MAX_PIXELS = 89_478_485


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=None, help="input size (default: the model's own)")
    parser.add_argument("--images", type=int, default=128, help="train images used per data measurement")
    parser.add_argument("--steps", type=int, default=3, help="timed model steps of batch 32 per figure")
    parser.add_argument("--rounds", type=int, default=2, help="model figures: best of this many rounds")
    parser.add_argument("--workers", default="0,1,2", help="loader worker counts of the end-to-end runs")
    return parser.parse_args(argv)


def train_samples(root: Path, limit: int) -> list[tuple[str, int]]:
    """(path, label) of the first LIMIT train images, classes interleaved so every class is present."""
    from torchvision.datasets import ImageFolder

    train_dir = find_split(root, "train")
    if train_dir is None:
        raise SystemExit(f"{root} has no train/ split folder")
    by_class: dict[int, list[tuple[str, int]]] = {}
    for path, label in ImageFolder(str(train_dir)).samples:
        by_class.setdefault(label, []).append((path, label))
    rounds = max(len(items) for items in by_class.values())
    interleaved = [items[i] for i in range(rounds) for items in by_class.values() if i < len(items)]
    return interleaved[:limit]


def per_core_rate(samples: list[tuple[str, int]], load: Any, transform: Any) -> float:
    """Images per CPU-second of LOAD (path -> image) + TRANSFORM in this process, one thread."""
    started = time.process_time()
    for path, _ in samples:
        transform(load(path))
    return len(samples) / (time.process_time() - started)


def data_rates(samples: list[tuple[str, int]], preprocessing: dict[str, Any]) -> dict[str, float]:
    """Per-core images/s of our pipelines ("ours train", "ours train draft", ...) and the tutorial's."""
    from torchvision.datasets.folder import default_loader

    from vizsla.data import create_transform
    from vizsla.data.decode import read_and_decode
    from vizsla.data.transforms import draft_size_for

    draft = draft_size_for(preprocessing)
    ours = {"train": create_transform(preprocessing, train=True, augment=True, hflip=True),
            "eval": create_transform(preprocessing, train=False, augment=False, hflip=False)}
    tutorial = tutorial_transforms(preprocessing)
    rates: dict[str, float] = {}
    for split in ("train", "eval"):
        for suffix, size in (("", None), (" draft", draft)):
            def load(path: str, size: int | None = size) -> Any:
                return read_and_decode(Path(path), max_pixels=MAX_PIXELS, draft_size=size)

            rates[f"ours {split}{suffix}"] = per_core_rate(samples, load, ours[split])
        rates[f"tutorial {split}"] = per_core_rate(samples, default_loader, tutorial[split])
    return rates


def draft_difference(samples: list[tuple[str, int]], preprocessing: dict[str, Any]) -> float:
    """Mean absolute difference (in [0, 1] pixel units) of eval tensors decoded with and without draft."""
    from vizsla.data import create_transform
    from vizsla.data.decode import read_and_decode
    from vizsla.data.transforms import draft_size_for

    transform = create_transform(preprocessing, train=False, augment=False, hflip=False)
    std = sum(preprocessing["std"]) / 3
    diffs = []
    for path, _ in samples:
        full = transform(read_and_decode(Path(path), max_pixels=MAX_PIXELS))
        draft = transform(read_and_decode(Path(path), max_pixels=MAX_PIXELS,
                                          draft_size=draft_size_for(preprocessing)))
        diffs.append(float((full - draft).abs().mean()) * std)
    return sum(diffs) / len(diffs)


def _step(model: Any, optimizer: Any, inputs: Any, targets: Any, runtime: Any, train: bool) -> None:
    import torch
    import torch.nn.functional as F

    if not train:
        with torch.inference_mode(), runtime.autocast():
            model(inputs)
        return
    with runtime.autocast():
        loss = F.cross_entropy(model(inputs).float(), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def model_rate(model: Any, runtime: Any, side: int, *, train: bool, steps: int) -> float:
    """Wall images/s of STEPS batches (after one warm-up) on synthetic inputs, all threads."""
    import torch

    fmt = torch.channels_last if runtime.channels_last else torch.contiguous_format
    model.to(memory_format=fmt).train(train)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    inputs = torch.randn(BATCH, 3, side, side).contiguous(memory_format=fmt)
    targets = torch.zeros(BATCH, dtype=torch.long)
    _step(model, optimizer, inputs, targets, runtime, train)
    started = time.perf_counter()
    for _ in range(steps):
        _step(model, optimizer, inputs, targets, runtime, train)
    return steps * BATCH / (time.perf_counter() - started)


def loader_rate(model: Any, runtime: Any, dataset: Any, *, workers: int, train: bool, steps: int) -> float:
    """Wall images/s of the real loader with WORKERS feeding the model, timed after its first batch."""
    import torch

    from vizsla.data import create_loader

    fmt = torch.channels_last if runtime.channels_last else torch.contiguous_format
    model.to(memory_format=fmt).train(train)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    loader = create_loader(dataset, batch_size=BATCH, shuffle=train, num_workers=workers, seed=0, epoch=0)
    images, started = 0, 0.0
    for index, batch in enumerate(loader):
        if batch is None:
            continue
        inputs, targets = batch
        _step(model, optimizer, inputs.contiguous(memory_format=fmt), targets, runtime, train)
        if index == 0:
            started = time.perf_counter()
        else:
            images += len(targets)
        if index >= steps:
            break
    return images / (time.perf_counter() - started)


def setups(root: Path, model_name: str, size: int | None) -> dict[str, tuple[Any, Any]]:
    """(model, runtime) of ours (auto runtime, full fine-tune) and of the baseline (fp32, NCHW)."""
    import dataclasses

    from vizsla.models import create_classifier
    from vizsla.training.runtime import resolve_runtime

    output = Path(tempfile.gettempdir()) / "vizsla-bench-data"  # never written: only the runtime is resolved
    spec = ours_spec(root, output, model=model_name, train={"finetune": "full"})
    spec.model.image_size = size
    spec.model.weights = "none"  # speed does not depend on the weights; nothing is downloaded
    ours_rt = resolve_runtime(spec)
    base_rt = dataclasses.replace(ours_rt, precision="fp32", channels_last=False)
    return {name: (create_classifier(spec.model, ["a", "b"]), runtime)
            for name, runtime in (("ours", ours_rt), ("baseline", base_rt))}


def verdict(model_ips: float, data_per_core: float, workers: int) -> str:
    """Which side limits a loader with WORKERS workers, from the rates measured apart."""
    need = model_ips / data_per_core
    if workers == 0:
        return f"data adds {100 * need / (1 + need):.0f}% to each step (decoded in the training process)"
    supply = workers * data_per_core
    side = "DATA is the bottleneck" if supply < model_ips else "model is the bottleneck"
    return f"{side}: {workers} worker(s) supply <= {supply:.0f} images/s, model needs {model_ips:.0f}"


def report_data(samples: list[tuple[str, int]], preprocessing: dict[str, Any]) -> dict[str, float]:
    """Measure and print the per-core data rates (one thread, as in a loader worker)."""
    import torch

    from vizsla.data.transforms import draft_size_for

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rates = data_rates(samples, preprocessing)
    diff = draft_difference(samples[:32], preprocessing)
    torch.set_num_threads(threads)
    draft = draft_size_for(preprocessing)
    print_table("Data pipeline, images/s per core (process CPU time, 1 thread)", [
        Row(f"{split} transform, ours{label} vs tutorial", rates[f"ours {split}{suffix}"],
            rates[f"tutorial {split}"], "images/s/core")
        for split in ("train", "eval") for suffix, label in (("", ""), (" draft", f" + draft {draft}"))
    ])
    print(f"draft decoding (JPEGs with a shorter side >= {2 * draft} px) changes eval pixels by {diff:.4f} "
          "on average (0-1 scale)")
    return rates


def report_models(models: dict[str, tuple[Any, Any]], side: int, args: Any) -> dict[tuple[str, str], float]:
    """Measure (best of --rounds, sides alternating) and print model images/s, ours vs baseline."""
    ips: dict[tuple[str, str], float] = {}
    for mode, train in (("train step", True), ("inference", False)):
        for _ in range(args.rounds):
            for name, (net, runtime) in models.items():
                rate = model_rate(net, runtime, side, train=train, steps=args.steps)
                ips[mode, name] = max(ips.get((mode, name), 0.0), rate)
    print_table(f"Model images/s at {side} px, batch {BATCH}, all cores (wall time, best of {args.rounds})", [
        Row(f"{mode}, ours vs baseline", ips[mode, "ours"], ips[mode, "baseline"], "images/s")
        for mode in ("train step", "inference")
    ])
    return ips


def report_end_to_end(model: Any, runtime: Any, samples: list[tuple[str, int]], rates: dict[str, float],
                      model_ips: dict[tuple[str, str], float], args: Any) -> None:
    """Our loader with 0, 1, 2 workers feeding our model: measured rate and which side limits it."""
    from vizsla.data import ImageFolderDataset, create_transform
    from vizsla.data.transforms import draft_size_for

    preprocessing = model.preprocessing
    draft = draft_size_for(preprocessing)
    print(f"\nEnd to end: our loader (draft {draft}) feeding our model, {args.steps} timed batches")
    needed = (args.steps + 1) * BATCH  # the first batch (worker start-up) is not timed
    cycled = [samples[i % len(samples)] for i in range(needed)]
    for mode, train in (("train step", True), ("inference", False)):
        split = "train" if train else "eval"
        transform = create_transform(preprocessing, train=train, augment=train, hflip=train)
        images = ImageFolderDataset(cycled, transform, max_pixels=MAX_PIXELS, draft_size=draft)
        for workers in (int(w) for w in args.workers.split(",")):
            rate = loader_rate(model, runtime, images, workers=workers, train=train, steps=args.steps)
            need = model_ips[mode, "ours"]
            print(f"  {mode:10s} {workers} worker(s): {rate:7.1f} images/s ({rate / need:.2f}x the model "
                  f"alone); {verdict(need, rates[f'ours {split} draft'], workers)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    dataset = pick_dataset(args.data)
    print_header("Benchmark 4: data pipeline images/s per core vs model images/s", dataset)
    warm_up_imports()
    models = setups(dataset[0], args.model, args.size)
    model, ours_rt = models["ours"]
    side = int(model.preprocessing["input_size"][-1])
    samples = train_samples(dataset[0], args.images)
    print_config("setup", {"model": args.model, "input": f"{side} px", "images": len(samples),
                           "batch": BATCH, "torch threads": torch.get_num_threads(),
                           "ours": f"{ours_rt.precision}, channels_last={ours_rt.channels_last}",
                           "baseline": "fp32, NCHW"})
    rates = report_data(samples, model.preprocessing)
    model_ips = report_models(models, side, args)
    report_end_to_end(model, ours_rt, samples, rates, model_ips, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
