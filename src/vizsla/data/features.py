"""The feature cache: a frozen backbone's pooled features, computed once and memory-mapped for head training.

A head on a frozen backbone only ever sees the backbone's pooled features, so every epoch and every tuning
trial can train on features computed once. The cache key is the content of everything that shapes them:
the backbone's weights, the preprocessing record, the transform, the augmented views and their seed, the
extraction backend and precision, and each split's ordered (file digest, label) list; a changed image or
transform is a new key. A key's folder `<cache>/features/<key>/` holds train.npy [views, N, D],
valid.npy and test.npy [N, D] (float16), labels_<split>.npy (int64) and meta.json. It is built in a temp
folder and renamed into place under a file lock, so parallel tuning workers build it once and never see it
half-written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vizsla.cache import cache_dir as kind_dir
from vizsla.data.dataset import ImageFolderDataset, create_loader, default_num_workers, loader_seed
from vizsla.data.extract import (
    Extractor,
    backbone_digest,
    create_extractor,
    device_of,
    int8_failed,
    onnx_model_path,
    resolve_backend,
)
from vizsla.data.transforms import (
    DEFAULT_CROP_PCT,
    TRAIN_CROP_RATIO,
    TRAIN_CROP_SCALE,
    create_transform,
    draft_size_for,
)
from vizsla.data.validate import ProgressBar, content_digest
from vizsla.disk import is_disk_full, preallocate, writing
from vizsla.errors import DataError, DiskFullError
from vizsla.infra.io import atomic_write_json, file_lock

if TYPE_CHECKING:
    from vizsla.data.prepare import PreparedData
    from vizsla.models.classifier import Classifier

log = logging.getLogger("vizsla.data")

FORMAT_VERSION = 1
STORAGE_DTYPE = np.float16  # head accuracy on hymenoptera equal to float32 storage; half the disk and I/O
PROGRESS_EVERY_S = 5.0  # a killed extraction loses at most this much work


@dataclass(frozen=True)
class FeatureSet:
    """Cached features of one (data, backbone, transform) key; arrays are read-only memory maps.

    `train` is [views, N_train, D]; `eval` has "valid" and "test" [N, D] (the same array when the test
    metrics come from valid); `labels` has int64 labels of train, valid and test.
    """

    key: str
    path: Path
    views: int
    dim: int
    backend: str
    precision: str
    hit: bool
    seconds: float
    train: np.ndarray
    eval: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    augmented: bool = False
    extracted: int = 0  # images run through the backbone by this build (0 on a hit)
    extract_seconds: float = 0.0  # the extraction loop alone: decode + backbone (no export, no lock wait)


@dataclass(frozen=True)
class _Plan:
    """What a build extracts and under which key."""

    key: str
    inputs: dict[str, Any]
    views: int
    augment: bool
    hflip: bool
    seed: int
    draft_size: int
    backend: str
    precision: str
    calibration: CalibrationSet | None = None


# "auto" exports to ONNX only when it pays off. Measured on efficientnet_lite0 at 224 px, 2-core
# AVX-512-VNNI CPU, decoding included (benchmarks/bench_extract.py): ONNX Runtime int8 ~280 photos/s, fp32
# ~146, torch bf16 (BatchNorm folded, channels_last) 30-55. The export, its check and the int8 calibration
# cost ~13 s once per backbone, so one job breaks even near 700 photos; but the export is also what serving
# a head-only job starts from (without it `vizsla serve` exports at start, 10-20 s), so from a few hundred
# photos it is made at training time. Below that, torch extracts at once (a cached export is always used).
ONNX_MIN_IMAGES = 300


# feature_views "auto" = one unaugmented view (the eval transform). Measured (benchmarks/bench_views.py,
# 3 seeds, int8 features, docs/benchmarks.md): augmented views bought at most ~1 point of test accuracy,
# within the noise of these test sets (hymenoptera, 153 photos: 94.3 % unaugmented, 95.2 / 95.0 / 94.8 %
# with 1 / 2 / 4 augmented views; flowers102, 821 photos: 92.8 % unaugmented, 93.2 % with 1 augmented
# view), while 2 or 4 views cost 2-4 extractions of the train split and an augmented cache is rebuilt for
# every seed. One augmented view was ahead on both sets by one to three photos but does not cost as much as
# an unaugmented one (its random crop defeats the reduced-size JPEG decode); a decode that draws the crop
# first and decodes at the crop's scale would make it the better auto. Augmented views stay available: set
# feature_views to a number.
def resolve_views(setting: int | str, augment: bool, train_images: int) -> tuple[int, bool, str]:
    """(views, augmented, why) of a feature cache for the `feature_views` SETTING and the data's size."""
    if not augment:
        return 1, False, "augmentation is off"
    if setting != "auto":
        return int(setting), True, "set by feature_views"
    # flowers102 (8,189 photos), measured: an augmented view extracts at 203 photos/s vs 260 for the eval view
    # (+10 s of a 57 s job) for +0.4 points (+0.9 on hymenoptera), within the test sets' noise.
    return 1, False, (
        f"feature_views auto: one unaugmented view of the {train_images} train images (an augmented view "
        "decodes at full size, ~25% slower, for at most ~1 point on a frozen backbone)")


def _digest_of(path: str, digests: dict[str, str]) -> str:
    """The validated content digest of PATH; files prepared without one are hashed here."""
    known = digests.get(path)
    return known if known is not None else content_digest(Path(path).read_bytes())


def _eval_splits(data: PreparedData) -> tuple[str, ...]:
    return ("valid", "test") if data.test_source == "test" else ("valid",)


def _key_inputs(model: Classifier, data: PreparedData, plan: dict[str, Any]) -> dict[str, Any]:
    """Everything the cached arrays depend on, as canonical JSON-ready values."""
    import PIL
    import torchvision

    transform = {
        "augment": plan["augment"],
        "hflip": plan["augment"] and plan["hflip"],
        "crop_scale": list(TRAIN_CROP_SCALE),
        "crop_ratio": list(TRAIN_CROP_RATIO),
        "default_crop_pct": DEFAULT_CROP_PCT,
        "draft_size": plan["draft_size"],
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
    }
    splits: dict[str, Any] = {
        split: [[_digest_of(path, data.digests), label] for path, label in data.splits[split]]
        for split in ("train", *_eval_splits(data))
    }
    if data.test_source != "test":
        splits["test"] = "valid"
    return {
        "format": FORMAT_VERSION,
        "arch": model.arch,
        "backbone": plan["backbone"],
        "preprocessing": model.preprocessing,
        "classes": list(data.classes),
        "transform": transform,
        "views": plan["views"],
        "seed": plan["seed"] if plan["augment"] else None,
        "backend": plan["backend"],
        "precision": plan["precision"],
        "runtime": _runtime_version(plan["backend"]),
        "calibration": plan.get("calibration"),
        "storage": np.dtype(STORAGE_DTYPE).name,
        "splits": splits,
    }


def _runtime_version(backend: str) -> str | None:
    """The ONNX Runtime version for ONNX features (its kernels and quantiser shape them), else None."""
    if backend != "onnx":
        return None
    import onnxruntime

    return str(onnxruntime.__version__)


@dataclass(frozen=True)
class CalibrationSet:
    """The int8 calibration images of a build (plain data: a distributed job sends it to every rank)."""

    key: str
    samples: tuple[tuple[str, int], ...]
    preprocessing: dict[str, Any]
    draft_size: int
    max_pixels: int

    def images(self) -> np.ndarray:
        """The samples through the eval transform, (N, C, H, W) float32; files that fail are left out."""
        transform = create_transform(self.preprocessing, train=False, augment=False, hflip=False)
        dataset = ImageFolderDataset(
            list(self.samples), transform, max_pixels=self.max_pixels, draft_size=self.draft_size
        )
        items = [item for item in (dataset[i] for i in range(len(dataset))) if item is not None]
        if not items:
            raise DataError("no calibration image could be decoded for int8 extraction")
        return torch.stack([image for image, _ in items]).numpy()


def _calibration(model: Classifier, data: PreparedData, draft: int, max_pixels: int) -> CalibrationSet:
    """The int8 calibration set: CALIBRATION_IMAGES train images spread evenly over the split (so over the
    classes of a class-ordered folder), through the eval transform; keyed by their content digests."""
    from vizsla.data.quantize import CALIBRATION_IMAGES

    samples = data.splits["train"]
    count = min(CALIBRATION_IMAGES, len(samples))
    picked = tuple(tuple(samples[i * len(samples) // count]) for i in range(count)) if count else ()
    digests = [_digest_of(path, data.digests) for path, _ in picked]
    key = hashlib.sha256(
        json.dumps([digests, model.preprocessing, draft], sort_keys=True).encode()
    ).hexdigest()
    return CalibrationSet(key, picked, dict(model.preprocessing), draft, max_pixels)  # type: ignore[arg-type]


def _plan(
    model: Classifier, data: PreparedData, settings: dict[str, Any], backend: str, cache_base: Path | None
) -> _Plan:
    """Resolve the backend and precision (without exporting) and compute the key."""
    augment = bool(settings["augment"])
    if int(settings["views"]) < 1:
        raise ValueError(f"views must be >= 1, got {settings['views']}")
    views = int(settings["views"]) if augment else 1
    draft = int(settings["draft_size"] or draft_size_for(model.preprocessing))
    digest = backbone_digest(model.backbone, model.arch)
    onnx_path = onnx_model_path(digest, tuple(model.preprocessing["input_size"][1:]), cache_base)
    if backend == "auto" and not onnx_path.is_file() and _images_to_extract(data, views) < ONNX_MIN_IMAGES:
        backend = "torch"  # exporting would cost more than ONNX Runtime saves on so few images
    wanted = str(settings.get("precision") or "fp32")
    name, precision = resolve_backend(backend, device_of(model.backbone), onnx_path, wanted)
    calibration = (
        _calibration(model, data, draft, int(settings.get("max_pixels") or 89_478_485))
        if precision == "int8"
        else None
    )
    if calibration is not None and int8_failed(onnx_path, calibration.key):
        precision, calibration = "fp32", None  # its features drifted on these images before
    plan = {
        "augment": augment,
        "hflip": bool(settings["hflip"]),
        "views": views,
        "seed": int(settings["seed"]),
        "draft_size": draft,
        "backend": name,
        "precision": precision,
    }
    key_plan = {**plan, "backbone": digest, "calibration": calibration.key if calibration else None}
    inputs = _key_inputs(model, data, key_plan)
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return _Plan(key=key[:32], inputs=inputs, calibration=calibration, **plan)  # type: ignore[arg-type]


def _images_to_extract(data: PreparedData, views: int) -> int:
    return sum(len(samples) * (views if split == "train" else 1) for split, samples in data.splits.items())


def _load(folder: Path, plan: _Plan, data: PreparedData) -> FeatureSet | None:
    """The FeatureSet stored in FOLDER, or None when it is missing or unreadable (then it is rebuilt)."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        train = np.load(folder / "train.npy", mmap_mode="r")
        labels = {s: np.load(folder / f"labels_{s}.npy") for s in ("train", *_eval_splits(data))}
        arrays = {s: np.load(folder / f"{s}.npy", mmap_mode="r") for s in _eval_splits(data)}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        log.warning("feature cache %s is unreadable (%s); rebuilding it", folder, exc)
        return None
    if meta.get("key") != plan.key or train.shape[:2] != (plan.views, len(data.splits["train"])):
        log.warning("feature cache %s does not match its key; rebuilding it", folder)
        return None
    if data.test_source != "test":
        arrays["test"], labels["test"] = arrays["valid"], labels["valid"]
    return FeatureSet(
        plan.key,
        folder,
        plan.views,
        int(train.shape[2]),
        plan.backend,
        plan.precision,
        True,
        0.0,
        train,
        arrays,
        labels,
        augmented=plan.augment,
    )


def _loader(
    data: PreparedData,
    split: str,
    transform: Any,
    plan: _Plan,
    settings: dict[str, Any],
    view: int,
    select: Any = None,
) -> Any:
    """A loader in sample order whose per-sample augmentation seed is fixed by (seed, view, index)."""
    dataset = ImageFolderDataset(
        data.splits[split], transform, max_pixels=settings["max_pixels"], draft_size=plan.draft_size
    )
    workers = settings["num_workers"]
    return create_loader(
        dataset,
        batch_size=settings["batch_size"],
        shuffle=False,
        num_workers=default_num_workers() if workers is None else workers,
        seed=plan.seed,
        epoch=view,
        select=select,
    )


def _fill(
    out: np.ndarray, loader: Any, extractor: Extractor, split: str, advance: Any, done: Any = None
) -> None:
    """Extract every batch of LOADER into the rows of OUT, in order; DataError when a file fails now.

    DONE(rows) is told how many rows of OUT are filled after each batch (the partial build's progress).
    """
    row = 0
    for batch in loader:
        if batch is None:
            continue
        features = extractor(batch[0])
        out[row : row + len(features)] = features
        row += len(features)
        advance(len(batch[0]))
        if done is not None:
            done(row)
    if row != len(out):
        raise DataError(
            f"{len(out) - row} {split} image(s) could not be decoded for the feature cache "
            "(changed since validation?)",
            hint="run the job again: validation lists them",
        )


class _Progress:
    """How many rows of each array part a partial build has filled, saved every few seconds.

    A killed build (SIGKILL, power loss) leaves `<root>/.<key>.partial/` with its arrays and progress.json;
    the next build of the same key continues after the rows recorded there. Rows are recorded only after
    the memory maps holding them were flushed, so a recorded row is on disk.
    """

    def __init__(self, folder: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
        self.path, self.key, self.arrays = folder / "progress.json", key, arrays
        self.rows: dict[str, int] = {}
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
            content = json.loads(self.path.read_text(encoding="utf-8"))
            if content["key"] == key:
                self.rows = {str(k): int(v) for k, v in content["rows"].items()}
        self.saved_at = time.monotonic()

    def done(self, part: str) -> int:
        return self.rows.get(part, 0)

    def update(self, part: str, rows: int, *, force: bool = False) -> None:
        self.rows[part] = rows
        if force or time.monotonic() - self.saved_at >= PROGRESS_EVERY_S:
            self.save()

    def save(self) -> None:
        for array in self.arrays.values():
            array.flush()
        atomic_write_json(self.path, {"key": self.key, "rows": self.rows})
        self.saved_at = time.monotonic()


def _bytes_needed(model: Classifier, data: PreparedData, plan: _Plan) -> int:
    """Bytes of a build's feature arrays (what a full disk must make room for)."""
    rows = plan.views * len(data.splits["train"]) + sum(len(data.splits[s]) for s in _eval_splits(data))
    return rows * model.head.in_features * np.dtype(STORAGE_DTYPE).itemsize


def _open_arrays(model: Classifier, data: PreparedData, plan: _Plan, folder: Path) -> dict[str, np.ndarray]:
    """The memory-mapped arrays of a build: reopened when a partial build left them, else created."""
    dim = model.head.in_features
    shapes = {"train": (plan.views, len(data.splits["train"]), dim)}
    shapes.update({split: (len(data.splits[split]), dim) for split in _eval_splits(data)})
    arrays = {}
    for split, shape in shapes.items():
        path = folder / f"{split}.npy"
        existing = None
        if path.is_file():
            with contextlib.suppress(OSError, ValueError):
                existing = np.load(path, mmap_mode="r+")
        if existing is not None and existing.shape == shape and existing.dtype == STORAGE_DTYPE:
            arrays[split] = existing
        else:
            arrays[split] = np.lib.format.open_memmap(path, mode="w+", dtype=STORAGE_DTYPE, shape=shape)
            preallocate(path)  # a full disk is an ENOSPC now, not a SIGBUS when the map is written
    return arrays


def _extract(
    model: Classifier,
    data: PreparedData,
    plan: _Plan,
    settings: dict[str, Any],
    extractor: Extractor,
    folder: Path,
) -> tuple[int, float]:
    """Fill train.npy (every view), the eval splits' arrays and the labels in FOLDER, continuing after the
    rows a killed build of the same key recorded there. Returns (rows extracted now, their seconds)."""
    pre = model.preprocessing
    train_tf = create_transform(pre, train=True, augment=plan.augment, hflip=plan.hflip)
    eval_tf = create_transform(pre, train=False, augment=False, hflip=False)
    splits = ("train", *_eval_splits(data))
    arrays = _open_arrays(model, data, plan, folder)
    progress = _Progress(folder, plan.key, arrays)
    parts = [(f"train/{view}", "train", view, arrays["train"][view]) for view in range(plan.views)]
    parts += [(split, split, 0, arrays[split]) for split in splits[1:]]
    total = sum(len(out) for *_, out in parts)
    resumed = sum(min(progress.done(name), len(out)) for name, *_, out in parts)
    if resumed:
        log.info("continuing the feature extraction a stopped build left: %d of %d rows done", resumed, total)
    label = f"extracting features ({extractor.backend} {extractor.precision})"
    started = time.perf_counter()
    with ProgressBar(total, settings["progress"], label) as advance:
        advance(resumed)
        try:
            for name, split, view, out in parts:
                start = min(progress.done(name), len(out))
                if start == len(out):
                    continue
                loader = _loader(
                    data, split, train_tf if split == "train" else eval_tf, plan, settings, view,
                    select=(lambda p, a=start: p[a:]) if start else None,
                )
                _fill(out[start:], loader, extractor, split, advance,
                      done=lambda rows, n=name, a=start: progress.update(n, a + rows))
                progress.update(name, len(out), force=True)
        except BaseException as exc:  # stopped (a signal) or failed: the next build continues from here
            if not is_disk_full(exc):  # (a full disk: the caller deletes the partial build to free space)
                with contextlib.suppress(Exception):
                    progress.save()
            raise
    seconds = time.perf_counter() - started
    for split in splits:
        np.save(folder / f"labels_{split}.npy", np.array([s[1] for s in data.splits[split]], np.int64))
    return total - resumed, seconds


def _meta(plan: _Plan, seconds: float, data: PreparedData, dim: int) -> dict[str, Any]:
    """meta.json: the key inputs in readable form (each split's digest list summarised) and the dims."""
    inputs = dict(plan.inputs)
    inputs["splits"] = {
        split: value
        if isinstance(value, str)
        else {"images": len(value), "sha256": hashlib.sha256(json.dumps(value).encode()).hexdigest()}
        for split, value in plan.inputs["splits"].items()
    }
    sizes = {split: len(data.splits[split]) for split in ("train", *_eval_splits(data))}
    return {
        "key": plan.key,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 3),
        "views": plan.views,
        "dim": dim,
        "images": sizes,
        "dtype": np.dtype(STORAGE_DTYPE).name,
        "backend": plan.backend,
        "precision": plan.precision,
        "inputs": inputs,
    }


def _publish(temp: Path, final: Path) -> None:
    """Rename TEMP to FINAL; where another builder got there first (no lock on this OS), keep theirs."""
    try:
        os.rename(temp, final)
    except OSError:
        if not (final / "meta.json").is_file():
            raise
        shutil.rmtree(temp, ignore_errors=True)


def _build(
    model: Classifier,
    data: PreparedData,
    plan: _Plan,
    settings: dict[str, Any],
    extractor: Extractor,
    root: Path,
    started: float,
) -> FeatureSet:
    """Extract into <root>/.<key>.partial and rename it to <root>/<key> (the caller holds the key's lock).

    The partial folder survives a killed build, whose successor continues it (see _Progress). The build
    time counts from STARTED, so it includes the key, the wait for the lock and any ONNX export.
    """
    final = root / plan.key
    for stale in root.glob(f".{plan.key}.tmp-*"):  # left by a killed distributed builder
        shutil.rmtree(stale, ignore_errors=True)
    if final.exists():  # unreadable (checked by the caller): replace it
        shutil.rmtree(final)
    partial = root / f".{plan.key}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    try:
        with writing(partial, needed=_bytes_needed(model, data, plan), what="the feature cache"):
            extracted, extract_seconds = _extract(model, data, plan, settings, extractor, partial)
            seconds = time.perf_counter() - started
            (partial / "progress.json").unlink(missing_ok=True)
            meta = _meta(plan, seconds, data, model.head.in_features)
            meta.update(extracted=extracted, extract_seconds=round(extract_seconds, 3))
            atomic_write_json(partial / "meta.json", meta)
    except DataError:  # the data changed: its next build has another key, this partial is useless
        shutil.rmtree(partial, ignore_errors=True)
        raise
    except DiskFullError:  # give the space back: the job's result.json and log need some
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _publish(partial, final)
    loaded = _load(final, plan, data)
    if loaded is None:
        raise RuntimeError(f"feature cache {final} unreadable right after it was written")
    rate = extracted / extract_seconds if extract_seconds > 0 else 0.0
    log.info("feature cache %s built in %.1f s (%s %s): %d images extracted in %.1f s, %.0f images/s "
             "decode included", final, seconds, plan.backend, plan.precision, extracted, extract_seconds,
             rate)
    return replace(loaded, hit=False, seconds=seconds, extracted=extracted, extract_seconds=extract_seconds)


def _settings(
    views: int, augment: bool, hflip: bool, seed: int, draft_size: int | None, **loading: Any
) -> dict[str, Any]:
    return {
        "views": views,
        "augment": augment,
        "hflip": hflip,
        "seed": seed,
        "draft_size": draft_size,
        **loading,
    }


def feature_key(
    model: Classifier,
    data: PreparedData,
    *,
    views: int = 4,
    augment: bool = True,
    hflip: bool = True,
    seed: int = 0,
    backend: str = "auto",
    precision: str = "auto",
    draft_size: int | None = None,
    cache_dir: Path | str | None = None,
) -> str:
    """The key build_features would use for these arguments (nothing is extracted)."""
    base = Path(cache_dir) if cache_dir is not None else None
    settings = _settings(views, augment, hflip, seed, draft_size, precision=precision)
    return _plan(model, data, settings, backend, base).key


def build_features(
    model: Classifier,
    data: PreparedData,
    *,
    views: int = 4,
    augment: bool = True,
    hflip: bool = True,
    seed: int = 0,
    batch_size: int = 64,
    num_workers: int | None = None,
    backend: str = "auto",
    precision: str = "auto",
    max_pixels: int = 89_478_485,
    draft_size: int | None = None,
    cache_dir: Path | str | None = None,
    progress: bool = False,
    dist_ctx: Any = None,
) -> FeatureSet:
    """The cached backbone features of DATA's splits: loaded when the key exists, else extracted once.

    In a distributed job (`dist_ctx` with world_size > 1) the processes share the extraction: each fills
    its block of rows of the same cache files (when they all see the cache folder), rank 0 publishes.

    With `augment`, `views` augmented views of each train image (the train transform, seeded per
    (seed, view, image)); without, one view through the eval transform. `cache_dir` is the base cache
    folder (None: $VIZSLA_CACHE_DIR or ~/.cache/vizsla); features go to its `features/`. `precision`
    (auto, fp32, int8) applies to ONNX extraction: auto runs a static int8 model calibrated on train images.
    """
    started = time.perf_counter()
    base = Path(cache_dir) if cache_dir is not None else None
    settings = _settings(
        views,
        augment,
        hflip,
        seed,
        draft_size,
        precision=precision,
        batch_size=batch_size,
        num_workers=num_workers,
        max_pixels=max_pixels,
        progress=progress,
    )
    root = kind_dir("features", base)
    plan = _plan(model, data, settings, backend, base)
    if dist_ctx is not None and dist_ctx.enabled:
        return _build_shared(model, data, plan, settings, root, base, started, dist_ctx)
    found = _load(root / plan.key, plan, data)
    if found is not None:
        return found
    with file_lock(root / f"{plan.key}.lock"):
        found = _load(root / plan.key, plan, data)  # built by another process while this one waited
        if found is not None:
            return found
        input_hw = tuple(model.preprocessing["input_size"][1:])
        extractor = create_extractor(
            model.backbone,
            input_hw=input_hw,
            model_key=plan.inputs["backbone"],
            backend=plan.backend if backend == "auto" else backend,
            cache_dir=base,
            precision=plan.precision,
            calibration=plan.calibration,
        )
        if (extractor.backend, extractor.precision) == (plan.backend, plan.precision):
            return _build(model, data, plan, settings, extractor, root, started)
    # ONNX or int8 failed just now: plan again for what runs, whose features get their own key.
    fallback = {"backend": "torch"} if extractor.backend != plan.backend else {"precision": "fp32"}
    return build_features(model, data, **{**settings, **fallback, "cache_dir": base})


def _block(length: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [lo, hi) of LENGTH that process RANK of WORLD extracts (contiguous, sizes differ by <= 1)."""
    return length * rank // world, length * (rank + 1) // world


def _create_arrays(model: Classifier, data: PreparedData, plan: _Plan, folder: Path) -> None:
    """Empty memory-mapped arrays and the labels, which the processes then fill block by block."""
    dim = model.head.in_features
    np.lib.format.open_memmap(
        folder / "train.npy",
        mode="w+",
        dtype=STORAGE_DTYPE,
        shape=(plan.views, len(data.splits["train"]), dim),
    ).flush()
    preallocate(folder / "train.npy")
    for split in _eval_splits(data):
        np.lib.format.open_memmap(
            folder / f"{split}.npy", mode="w+", dtype=STORAGE_DTYPE, shape=(len(data.splits[split]), dim)
        ).flush()
        preallocate(folder / f"{split}.npy")
    for split in ("train", *_eval_splits(data)):
        np.save(folder / f"labels_{split}.npy", np.array([s[1] for s in data.splits[split]], np.int64))


def _extract_block(
    model: Classifier,
    data: PreparedData,
    plan: _Plan,
    settings: dict[str, Any],
    extractor: Extractor,
    folder: Path,
    rank: int,
    world: int,
) -> None:
    """Fill this process's block of rows of every view and split; the augmentation seeds are those of a
    single-process build, so the cache holds the same features whichever way it was built."""
    pre = model.preprocessing
    train_tf = create_transform(pre, train=True, augment=plan.augment, hflip=plan.hflip)
    eval_tf = create_transform(pre, train=False, augment=False, hflip=False)
    blocks = {split: _block(len(data.splits[split]), rank, world) for split in ("train", *_eval_splits(data))}
    total = plan.views * (blocks["train"][1] - blocks["train"][0]) + sum(
        hi - lo for split, (lo, hi) in blocks.items() if split != "train"
    )
    label = f"extracting features ({extractor.backend} {extractor.precision}, {world} processes)"
    with ProgressBar(total, settings["progress"], label) as advance:
        train = np.load(folder / "train.npy", mmap_mode="r+")
        lo, hi = blocks["train"]
        for view in range(plan.views):
            loader = _loader(data, "train", train_tf, plan, settings, view, select=lambda p: p[lo:hi])
            _fill(train[view, lo:hi], loader, extractor, "train", advance)
        train.flush()
        for split in _eval_splits(data):
            out = np.load(folder / f"{split}.npy", mmap_mode="r+")
            s_lo, s_hi = blocks[split]
            loader = _loader(data, split, eval_tf, plan, settings, 0, select=lambda p, a=s_lo, b=s_hi: p[a:b])
            _fill(out[s_lo:s_hi], loader, extractor, split, advance)
            out.flush()


def _build_shared(
    model: Classifier,
    data: PreparedData,
    plan: _Plan,
    settings: dict[str, Any],
    root: Path,
    base: Path | None,
    started: float,
    ctx: Any,
) -> FeatureSet:
    """The distributed build: rank 0 plans, locks and publishes; every rank extracts its block."""
    from vizsla.infra import collectives

    plan = collectives.broadcast_object(plan)  # rank 0's backend choice, whatever the others' caches hold
    found = _load(root / plan.key, plan, data)
    if not collectives.any_rank(found is None):
        return found  # type: ignore[return-value]
    with contextlib.ExitStack() as stack:
        temp: Path | None = None
        error: BaseException | None = None
        if ctx.is_main:
            try:
                stack.enter_context(file_lock(root / f"{plan.key}.lock"))
                if _load(root / plan.key, plan, data) is None:
                    for stale in root.glob(f".{plan.key}.tmp-*"):
                        shutil.rmtree(stale, ignore_errors=True)
                    temp = root / f".{plan.key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                    temp.mkdir(parents=True)
                    _create_arrays(model, data, plan, temp)
            except Exception as exc:  # noqa: BLE001 - raised on every rank below
                error = exc
        temp, error = collectives.broadcast_object((temp, error))
        if error is not None:
            raise error
        if temp is None:  # built by another job while rank 0 waited for the lock
            found = _load(root / plan.key, plan, data)
            return (
                found if found is not None else build_features(model, data, **_single(settings, plan, base))
            )
        if collectives.any_rank(not temp.is_dir()):  # no shared cache folder: each process builds its own
            collectives.barrier()
            if ctx.is_main:
                shutil.rmtree(temp, ignore_errors=True)
            stack.close()
            return build_features(model, data, **_single(settings, plan, base))
        try:
            input_hw = tuple(model.preprocessing["input_size"][1:])
            extractor = create_extractor(
                model.backbone,
                input_hw=input_hw,
                model_key=plan.inputs["backbone"],
                backend=plan.backend,
                cache_dir=base,
                precision=plan.precision,
                calibration=plan.calibration,
            )
            if (extractor.backend, extractor.precision) != (plan.backend, plan.precision):
                raise RuntimeError(
                    f"feature extractor is {extractor.backend} {extractor.precision} on rank "
                    f"{ctx.rank}, planned {plan.backend} {plan.precision}"
                )
            _extract_block(model, data, plan, settings, extractor, temp, ctx.rank, ctx.world_size)
        except Exception as exc:  # noqa: BLE001 - every rank learns of it (no one waits forever)
            error = exc
        collectives.agree_on_error(error)
        if ctx.is_main:
            seconds = time.perf_counter() - started
            atomic_write_json(temp / "meta.json", _meta(plan, seconds, data, model.head.in_features))
            _publish(temp, root / plan.key)
        collectives.barrier()
    loaded = _load(root / plan.key, plan, data)
    if loaded is None:
        raise RuntimeError(f"feature cache {root / plan.key} unreadable right after it was written")
    seconds = time.perf_counter() - started
    log.info("feature cache %s built by %d processes in %.1f s", root / plan.key, ctx.world_size, seconds)
    return replace(loaded, hit=False, seconds=seconds)


def _single(settings: dict[str, Any], plan: _Plan, base: Path | None) -> dict[str, Any]:
    """build_features arguments for a single-process build of PLAN's key."""
    return {**settings, "backend": plan.backend, "precision": plan.precision, "cache_dir": base}


class FeatureLoader:
    """Batches (features float32, labels int64) of one split, in a fixed order per (seed, epoch).

    Train features [views, N, D] with shuffle: every image is seen once per epoch through one of its views,
    the view and the order drawn from (seed, epoch), so a resumed epoch replays the same batches. Eval
    features [N, D] (or shuffle off): in order, view 0.
    """

    def __init__(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
        select: Callable[[list[Any]], list[Any]] | None = None,
        start_batch: int = 0,
    ) -> None:
        if features.ndim not in (2, 3) or features.shape[-2] != len(labels):
            raise ValueError(f"features {features.shape} do not match {len(labels)} labels")
        self.features, self.labels = features, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.epoch = seed, epoch
        self.select = select  # this process's share of the full order (distributed jobs)
        self.start_batch = start_batch  # batches of the epoch already done (a resumed, stopped epoch)

    def _count(self) -> int:
        n = len(self.labels)
        return n if self.select is None else len(self.select(list(range(n))))

    def __len__(self) -> int:
        n = self._count()
        batches = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return max(0, batches - self.start_batch)

    def _order(self) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(self.labels)
        views = self.features.shape[0] if self.features.ndim == 3 else 0
        if not self.shuffle:
            order, chosen = np.arange(n), (np.zeros(n, np.int64) if views else None)
        else:
            generator = torch.Generator().manual_seed(loader_seed(self.seed, self.epoch))
            order = torch.randperm(n, generator=generator).numpy()
            chosen = torch.randint(0, views, (n,), generator=generator).numpy() if views else None
        if self.select is None:
            return order, (chosen[order] if chosen is not None else None)
        picked = np.asarray(self.select(list(range(n))), dtype=np.int64)
        return order[picked], (chosen[order[picked]] if chosen is not None else None)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, views = self._order()
        first = self.start_batch * self.batch_size
        for start in range(first, first + len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            rows = (
                self.features[views[start : start + self.batch_size], index]
                if views is not None
                else self.features[index]
            )
            yield (
                torch.from_numpy(np.asarray(rows, dtype=np.float32)),
                torch.from_numpy(np.asarray(self.labels[index], dtype=np.int64)),
            )


def feature_batches(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
) -> FeatureLoader:
    """A FeatureLoader (len() = batches) over cached FEATURES; see FeatureLoader for the view choice."""
    return FeatureLoader(
        features, labels, batch_size=batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last
    )
