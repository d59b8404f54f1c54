"""Benchmark: feature extraction photos/s end to end (read, decode, transform, backbone), by backend.

What `vizsla train --finetune head` does on a cold cache, measured piece by piece on the same photos: the
feature cache's own loader (decode pool of DataLoader workers, reduced-size JPEG decoding, the eval transform)
feeding each extractor the cache can use: torch (BatchNorm folded, channels_last, bf16 autocast where the CPU
has it), ONNX Runtime fp32, and ONNX Runtime static int8 (calibrated on 32 of the photos), each with ONNX
Runtime's thread spinning on and off. A decode-only pass (no model) shows how much of the time is the data
pipeline's. The export and quantisation times are printed apart: they are paid once per backbone.

    python benchmarks/bench_extract.py [--data DIR] [--images 2000] [--workers N] [--quick]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from common import SHARED_DATASETS, Row, base_parser, check_target, find_split, print_header, print_table

TARGET = 200.0  # photos/s, decode included (issue 16)


def parse_args(argv: list[str] | None = None) -> Any:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few photos/trials/epochs")
    parser.add_argument("--images", type=int, default=2000, help="photos per measurement")
    parser.add_argument("--workers", type=int, default=None, help="decode workers (default: the cache's)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images = 256
    return args


def _samples(root: Path, count: int) -> list[tuple[str, int]]:
    train = find_split(root, "train") or root
    files = sorted(p for p in train.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    step = max(1, len(files) // count)
    return [(str(p), 0) for p in files[::step][:count]]


def _rate(samples: list[tuple[str, int]], extractor: Any, preprocessing: dict, workers: int) -> float:
    """Photos/s through the feature cache's loader into EXTRACTOR (None: decode only)."""
    from vizsla.data import ImageFolderDataset, create_loader, create_transform
    from vizsla.data.transforms import draft_size_for

    transform = create_transform(preprocessing, train=False, augment=False, hflip=False)
    dataset = ImageFolderDataset(samples, transform, max_pixels=89_478_485,
                                 draft_size=draft_size_for(preprocessing))
    loader = create_loader(dataset, batch_size=64, shuffle=False, num_workers=workers, seed=0, epoch=0)
    started = time.perf_counter()
    count = 0
    for batch in loader:
        if extractor is not None:
            extractor(batch[0])
        count += len(batch[0])
    return count / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch

    from vizsla.data.dataset import default_num_workers
    from vizsla.data.extract import OnnxExtractor, TorchExtractor, _export_onnx, torch_precision
    from vizsla.data.quantize import calibration_batches, quantize_bytes
    from vizsla.models import create_classifier
    from vizsla.spec import ModelSpec

    args = parse_args(argv)
    root = Path(args.data).resolve() if args.data else (SHARED_DATASETS / "flowers102").resolve()
    print_header("bench_extract: feature extraction photos/s, decode included", (root, root.name))
    samples = _samples(root, args.images)
    workers = default_num_workers() if args.workers is None else args.workers
    model = create_classifier(ModelSpec(name="efficientnet_lite0", weights="auto"), ["a", "b"]).eval()
    pre = model.preprocessing
    hw = tuple(pre["input_size"][1:])
    print(f"{len(samples)} photos, {workers} decode workers, batch 64, {torch.get_num_threads()} threads")
    started = time.perf_counter()
    fp32_bytes = _export_onnx(model.backbone, hw)
    export_s = time.perf_counter() - started
    from vizsla.data.features import CalibrationSet

    calibration = CalibrationSet("bench", tuple(samples[:: max(1, len(samples) // 32)][:32]), dict(pre), 256,
                                 89_478_485).images()
    started = time.perf_counter()
    int8_bytes = quantize_bytes(fp32_bytes, calibration_batches(np.ascontiguousarray(calibration)))
    quantize_s = time.perf_counter() - started
    print(f"one-time costs: ONNX export {export_s:.1f} s, int8 quantisation (32 photos) {quantize_s:.1f} s")
    decode = _rate(samples, None, pre, workers)
    print(f"decode + transform only: {decode:.1f} photos/s", flush=True)
    rates: dict[str, float] = {}
    candidates = {
        f"torch {torch_precision(torch.device('cpu'))}": lambda: TorchExtractor(model.backbone,
                                                                                 torch_precision(torch.device("cpu"))),
        "onnx fp32": lambda: OnnxExtractor(fp32_bytes, "fp32"),
        "onnx int8": lambda: OnnxExtractor(int8_bytes, "int8"),
        "onnx int8, no spinning": lambda: OnnxExtractor(int8_bytes, "int8", spinning=False),
        "onnx int8, spinning": lambda: OnnxExtractor(int8_bytes, "int8", spinning=True),
    }
    for name, make in candidates.items():
        extractor = make()
        extractor(torch.zeros(8, 3, *hw))  # warm-up
        rates[name] = _rate(samples, extractor, pre, workers)
        print(f"{name}: {rates[name]:.1f} photos/s", flush=True)
    fp32 = rates["onnx fp32"]
    rows = [Row(name, rate, fp32, "photos/s", "speed") for name, rate in rates.items()]
    rows.append(Row("decode + transform only", decode, fp32, "photos/s", "speed"))
    print_table("extraction photos/s vs ONNX Runtime fp32", rows)
    check_target("int8 extraction photos/s (decode included)", rates["onnx int8"], TARGET)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
