"""The quick-start dataset: scikit-learn's bundled handwritten digits written out as a PNG image folder.

1797 real 8x8 scans (16 grey levels, 10 classes) ship inside scikit-learn, so the quick start needs no
download. Images are written as dark ink on a white background (like pen on paper), 8-bit grayscale,
upscaled with a bicubic filter so strokes stay smooth.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vizsla.errors import DataError

SOURCE = "sklearn.datasets.load_digits"
SPLITS = ("train", "valid", "test")
CLASSES = tuple(str(digit) for digit in range(10))
METADATA = "dataset.json"
FORMAT_VERSION = 1
MAX_LEVEL = 16  # load_digits pixel values are 0..16 (ink coverage of a 4x4 block)


def create_digits(
    out_dir: Path,
    *,
    size: int = 32,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, dict[str, int]]:
    """Write the digits as out_dir/{train,valid,test}/{0..9}/digit_<index>.png; return counts per split/class.

    Idempotent: a complete dataset made with the same parameters is left as it is. With overwrite, the
    split folders and dataset.json are replaced; nothing else in out_dir is touched.
    """
    out_dir = Path(out_dir)
    params = _parameters(size, fractions, seed)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir} exists and is not a folder", hint="choose another output folder")
    if not overwrite:
        existing = _existing_counts(out_dir, params)
        if existing is not None:
            return existing
        _check_empty(out_dir)
    images, labels = _load()
    splits = _split(labels, params["fractions"], seed)
    counts = {name: _class_counts(labels[idx]) for name, idx in splits.items()}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; it becomes out_dir itself
    try:
        for name, idx in splits.items():
            _write_split(staging / name, images, labels, idx, size)
        text = json.dumps(_metadata(params, counts), indent=2) + "\n"
        (staging / METADATA).write_text(text, encoding="utf-8")  # staging is invisible until installed
        _install(staging, out_dir, list(splits))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts


def render_digit(image: Any, size: int) -> Any:
    """One 8x8 digit (values 0..16) as a size x size 8-bit grayscale PIL image, dark ink on white."""
    import numpy as np
    from PIL import Image

    ink = np.rint(np.asarray(image, dtype=np.float64) * (255.0 / MAX_LEVEL)).clip(0, 255).astype(np.uint8)
    small = Image.fromarray(255 - ink)
    return small.resize((size, size), Image.Resampling.BICUBIC)


def _parameters(size: int, fractions: Sequence[float], seed: int) -> dict[str, Any]:
    """Validated creation parameters, in the form stored in dataset.json and compared on reuse."""
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 1024:
        raise DataError(f"digits size must be an integer from 8 to 1024 pixels, got {size!r}")
    values = [float(f) for f in fractions]
    if len(values) != 3 or any(f < 0 for f in values) or abs(sum(values) - 1) > 1e-6 or values[0] <= 0:
        raise DataError(
            f"digits fractions must be three shares (train, valid, test) >= 0 summing to 1: {fractions!r}",
            hint="for example 0.7 0.15 0.15",
        )
    return {
        "size": size,
        "fractions": values,
        "seed": int(seed),
        "ink": "dark-on-light",
        "resample": "bicubic",
    }


def _existing_counts(out_dir: Path, params: dict[str, Any]) -> dict[str, dict[str, int]] | None:
    """Counts of a complete dataset with the same parameters in out_dir, else None."""
    try:
        meta = json.loads((out_dir / METADATA).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("source") != SOURCE or meta.get("parameters") != params:
        return None
    counts = meta.get("counts")
    if not isinstance(counts, dict) or not all(isinstance(c, dict) for c in counts.values()):
        return None
    for split, per_class in counts.items():
        for cls, expected in per_class.items():
            if len(list((out_dir / split / cls).glob("digit_*.png"))) != expected:
                return None
    return counts


def _check_empty(out_dir: Path) -> None:
    """Refuse to write into a folder that holds anything else (another dataset, other parameters)."""
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    what = "is not empty"
    try:
        made_with = json.loads((out_dir / METADATA).read_text(encoding="utf-8"))["parameters"]
        what = f"holds digits made with other parameters or incomplete ({made_with})"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    raise DataError(
        f"{out_dir} {what}",
        hint="choose another folder, or pass --overwrite to replace its train/valid/test folders",
    )


def _load() -> tuple[Any, Any]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


def _split(labels: Any, fractions: list[float], seed: int) -> dict[str, Any]:
    """Stratified, seeded train/valid/test indices; a split with fraction 0 is left out."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    _, valid_f, test_f = fractions
    index = np.arange(len(labels))
    if valid_f + test_f == 0:
        return {"train": index}
    try:
        train, held = train_test_split(index, test_size=valid_f + test_f, stratify=labels, random_state=seed)
        if valid_f == 0 or test_f == 0:
            return {"train": train, "valid" if valid_f else "test": held}
        valid, test = train_test_split(
            held, test_size=test_f / (valid_f + test_f), stratify=labels[held], random_state=seed
        )
    except ValueError as exc:  # a share too small to hold every class once
        raise DataError(f"digits fractions {fractions} leave a split without every class: {exc}") from exc
    return {"train": train, "valid": valid, "test": test}


def _class_counts(labels: Any) -> dict[str, int]:
    return {cls: int((labels == int(cls)).sum()) for cls in CLASSES}


def _write_split(folder: Path, images: Any, labels: Any, index: Any, size: int) -> None:
    for cls in CLASSES:
        (folder / cls).mkdir(parents=True, exist_ok=True)
    for i in sorted(int(i) for i in index):
        render_digit(images[i], size).save(folder / str(labels[i]) / f"digit_{i:04d}.png", optimize=False)


def _metadata(params: dict[str, Any], counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    import sklearn

    total = sum(sum(per_class.values()) for per_class in counts.values())
    return {
        "format_version": FORMAT_VERSION,
        "source": SOURCE,
        "description": "UCI ML hand-written digits as bundled with scikit-learn (8x8, 16 grey levels)",
        "sklearn_version": sklearn.__version__,
        "parameters": params,
        "classes": list(CLASSES),
        "total": total,
        "counts": counts,
    }


def _install(staging: Path, out_dir: Path, splits: list[str]) -> None:
    """Move the finished dataset into place; dataset.json goes last so a partial install never looks done."""
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    (out_dir / METADATA).unlink(missing_ok=True)
    for name in SPLITS:
        target = out_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        if name in splits:
            os.replace(staging / name, target)
    os.replace(staging / METADATA, out_dir / METADATA)
