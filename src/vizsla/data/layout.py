"""Discover how a local image folder is laid out: split folders, class folders and image files.

Two layouts are accepted: ROOT/<split>/<class>/**/<file> and ROOT/<class>/**/<file>; the second is split
here, stratified by class and seeded, so every class appears in every split when it has enough images.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vizsla.errors import DataError
from vizsla.spec import DataSpec

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "valid": ("valid", "val", "validation", "dev"),
    "test": ("test", "testing"),
}
_IGNORED_NAMES = {"__macosx", "thumbs.db", "desktop.ini", "$recycle.bin"}
_LAYOUT_HINT = "expected ROOT/<class>/<image> or ROOT/train/<class>/<image> (+ valid/, test/)"

Entry = tuple[Path, str]  # (file, class name)
Sample = tuple[str, int]  # (file path, label index): what datasets and loaders consume


@dataclass(frozen=True)
class Layout:
    """Files found per logical split, before decoding; `files["test"]` is empty without a test split."""

    root: Path
    classes: list[str]
    files: dict[str, list[Entry]]
    split_dirs: dict[str, str]
    method: str  # "folders", "stratified" (single folder) or "carved_valid" (valid taken from train)
    warnings: list[str] = field(default_factory=list)
    split_info: dict[str, Any] = field(default_factory=dict)


def is_hidden(name: str) -> bool:
    """Dot-files and OS litter (__MACOSX, Thumbs.db) are skipped silently everywhere."""
    return name.startswith(".") or name.lower() in _IGNORED_NAMES


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))


def list_files(folder: Path) -> list[Path]:
    """Every non-hidden file under FOLDER, recursively, sorted; extensions are not trusted either way."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not is_hidden(d)]
        found.extend(Path(dirpath) / name for name in filenames if not is_hidden(name))
    return sorted(found)


def _auto_split_dir(root: Path, logical: str) -> Path | None:
    matches = [p for p in _subdirs(root) if p.name.lower() in SPLIT_ALIASES[logical]]
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise DataError(
            f"several {logical} split folders in {root}: {names}",
            hint=f"set data.{logical}_split to the one to use",
        )
    return matches[0] if matches else None


def find_split_dirs(root: Path, spec: DataSpec) -> dict[str, Path]:
    """Split folders of ROOT by logical name; explicit spec names win over the usual spellings."""
    explicit = {"train": spec.train_split, "valid": spec.valid_split, "test": spec.test_split}
    found: dict[str, Path] = {}
    for logical in SPLITS:
        name = explicit[logical]
        if name is not None:
            path = root / name
            if not path.is_dir():
                raise DataError(f"{logical} split folder not found: {path}",
                                hint=f"check data.{logical}_split")
            found[logical] = path
        elif (path := _auto_split_dir(root, logical)) is not None:
            found[logical] = path
    return found


def _scan_classes(split_dir: Path, warns: list[str]) -> dict[str, list[Path]]:
    loose = [p for p in split_dir.iterdir() if p.is_file() and not is_hidden(p.name)]
    if loose:
        warns.append(f"{len(loose)} file(s) directly in {split_dir}, outside class folders, ignored")
    return {d.name: list_files(d) for d in _subdirs(split_dir)}


def _stratified_counts(n: int, fractions: Sequence[float]) -> list[int] | None:
    """Images per split for one class, or None when the class has fewer images than used splits."""
    used = [i for i, f in enumerate(fractions) if f > 0]
    if n < len(used):
        return None
    counts = [0, 0, 0]
    for i in used[1:]:
        counts[i] = max(1, round(n * fractions[i]))
    while n - sum(counts) < 1:
        largest = max(used[1:], key=lambda i: counts[i])
        counts[largest] -= 1
    counts[0] = n - sum(counts)
    return counts


def stratified_split(
    by_class: dict[str, list[Path]], fractions: Sequence[float], seed: int
) -> tuple[dict[str, list[Entry]], list[str]]:
    """Split each class by FRACTIONS (train, valid, test) with a per-class seeded shuffle; return warnings."""
    out: dict[str, list[Entry]] = {name: [] for name in SPLITS}
    warns = []
    for cls in sorted(by_class):
        files = sorted(by_class[cls])
        random.Random(f"{seed}/{cls}").shuffle(files)
        counts = _stratified_counts(len(files), fractions)
        if counts is None:
            warns.append(f"class {cls!r} has only {len(files)} image(s): all kept in train, "
                         "none in valid/test")
            counts = [len(files), 0, 0]
        start = 0
        for name, count in zip(SPLITS, counts, strict=True):
            out[name].extend((path, cls) for path in files[start : start + count])
            start += count
    return out, warns


def _train_classes(train_dir: Path, by_class: dict[str, list[Path]], warns: list[str]) -> list[str]:
    """Class names that have files; errors for no classes, no images or a single class."""
    if not by_class:
        raise DataError(f"no class folders in {train_dir}", hint=_LAYOUT_HINT)
    empty = sorted(c for c, files in by_class.items() if not files)
    if empty:
        warns.append(f"empty class folder(s) in {train_dir} dropped: {', '.join(empty)}")
    classes = sorted(c for c, files in by_class.items() if files)
    if not classes:
        raise DataError(f"no image files in {train_dir}", hint=_LAYOUT_HINT)
    if len(classes) < 2:
        raise DataError(
            f"only one class ({classes[0]!r}) with images in {train_dir}: a classifier needs at least 2",
            hint=_LAYOUT_HINT,
        )
    return classes


def _split_entries(split: str, split_dir: Path, classes: list[str], warns: list[str]) -> list[Entry]:
    """Files of a valid/test folder; classes unknown to train are dropped, missing ones warned about."""
    by_class = _scan_classes(split_dir, warns)
    extra = sorted(c for c in by_class if c not in classes and by_class[c])
    if extra:
        dropped = sum(len(by_class[c]) for c in extra)
        warns.append(f"{split} classes not in train dropped ({dropped} files): {', '.join(extra)}")
    missing = [c for c in classes if not by_class.get(c)]
    if missing:
        warns.append(f"train classes with no {split} images: {', '.join(missing)}")
    return [(path, c) for c in classes for path in by_class.get(c, [])]


def _single_folder_layout(root: Path, spec: DataSpec) -> Layout:
    warns: list[str] = []
    by_class = _scan_classes(root, warns)
    classes = _train_classes(root, by_class, warns)
    wanted = {c: by_class[c] for c in classes}
    files, split_warns = stratified_split(wanted, spec.split_fractions, spec.split_seed)
    split_dirs = {"train": ".", "valid": "."} | ({"test": "."} if files["test"] else {})
    info = {"method": "stratified", "seed": spec.split_seed, "fractions": list(spec.split_fractions)}
    return Layout(root, classes, files, split_dirs, "stratified", warns + split_warns, info)


def _carve_valid(train: list[Entry], spec: DataSpec) -> tuple[list[Entry], list[Entry], list[str], float]:
    """Take a stratified validation share out of the train files (train + test folders, no valid)."""
    f_train, f_valid, _ = spec.split_fractions
    share = f_valid / (f_train + f_valid) if f_valid > 0 else 0.1
    by_class: dict[str, list[Path]] = {}
    for path, cls in train:
        by_class.setdefault(cls, []).append(path)
    files, warns = stratified_split(by_class, (1.0 - share, share, 0.0), spec.split_seed)
    return files["train"], files["valid"], warns, share


def _folders_layout(root: Path, spec: DataSpec, dirs: dict[str, Path]) -> Layout:
    if "train" not in dirs:
        found = ", ".join(p.name for p in dirs.values())
        raise DataError(f"split folders ({found}) but no train folder in {root}",
                        hint="name it train/ or set data.train_split")
    warns: list[str] = []
    others = [p.name for p in _subdirs(root) if p not in dirs.values()]
    if others:
        warns.append(f"folders in {root} that are not splits were ignored: {', '.join(others)}")
    by_class = _scan_classes(dirs["train"], warns)
    classes = _train_classes(dirs["train"], by_class, warns)
    files = {"train": [(p, c) for c in classes for p in by_class[c]], "valid": [], "test": []}
    for split in ("valid", "test"):
        if split in dirs:
            files[split] = _split_entries(split, dirs[split], classes, warns)
    split_dirs = {k: v.relative_to(root).as_posix() for k, v in dirs.items()}
    if "valid" in dirs:
        return Layout(root, classes, files, split_dirs, "folders", warns, {"method": "folders"})
    files["train"], files["valid"], carve_warns, share = _carve_valid(files["train"], spec)
    split_dirs["valid"] = split_dirs["train"]
    info = {"method": "carved_valid", "seed": spec.split_seed, "valid_share_of_train": round(share, 6)}
    return Layout(root, classes, files, split_dirs, "carved_valid", warns + carve_warns, info)


def discover_layout(root: Path, spec: DataSpec) -> Layout:
    """Find splits, classes and files of a local folder; DataError when it cannot be used at all."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"data root is not a folder: {root}", hint=_LAYOUT_HINT)
    dirs = find_split_dirs(root, spec)
    return _folders_layout(root, spec, dirs) if dirs else _single_folder_layout(root, spec)
