"""Save a Classifier as a self-describing folder and load it back without any download."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from vizsla.errors import ModelError
from vizsla.jobdir import JobDir
from vizsla.models.classifier import Classifier

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
LABELS_FILE = "labels.json"
PREPROCESSING_FILE = "preprocessing.json"
FORMAT_VERSION = 1


def save_model(model: Classifier, out_dir: str | Path) -> Path:
    """Write weights, config, labels and preprocessing to `out_dir`, replacing it once all are written."""
    from safetensors.torch import save_model as save_safetensors

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        save_safetensors(model, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        config = {**model.config, "format_version": FORMAT_VERSION, "versions": _versions()}
        _write_json(tmp / CONFIG_FILE, config)
        _write_json(tmp / LABELS_FILE, list(model.labels))
        _write_json(tmp / PREPROCESSING_FILE, model.preprocessing)
        _fsync_files(tmp)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _fsync_files(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


def _replace_dir(new: Path, target: Path) -> None:
    """Swap `new` in for `target` by renames, so a reader sees the old or the new folder, never a mix."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, old / target.name)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("vizsla", "torch", "timm"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def resolve_model_dir(path: str | Path) -> Path:
    """A model folder, or a job folder's `model/`; ModelError naming the path otherwise."""
    path = Path(path).expanduser()
    for candidate in (path, JobDir(path).model_dir):
        if (candidate / CONFIG_FILE).is_file() and (candidate / WEIGHTS_FILE).is_file():
            return candidate
    if not path.exists():
        raise ModelError(f"model path not found: {path}")
    raise ModelError(f"{path} is not a saved model: expected {CONFIG_FILE} and {WEIGHTS_FILE} in it or in "
                     f"{path / 'model'}", hint="Pass a finished job's folder or its model/ folder.")


def read_config(model_dir: Path) -> dict[str, Any]:
    """The saved config.json, checked for the keys that rebuild the model."""
    path = model_dir / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read model config {path}: {exc}") from None
    required = ("arch", "num_classes", "head", "labels", "preprocessing")
    missing = [key for key in required if not isinstance(config, dict) or key not in config]
    if missing:
        raise ModelError(f"model config {path} lacks {', '.join(missing)}; it is not a vizsla model config")
    return config


def load_model(path: str | Path, device: str = "cpu") -> Classifier:
    """Rebuild the saved Classifier (no pretrained download), load its weights strictly, in eval mode."""
    from safetensors.torch import load_model as load_safetensors

    model_dir = resolve_model_dir(path)
    config = read_config(model_dir)
    model = _build_from_config(config, model_dir)
    try:
        load_safetensors(model, str(model_dir / WEIGHTS_FILE), strict=True, device="cpu")
    except Exception as exc:  # safetensors raises RuntimeError/SafetensorError for garbled files
        raise ModelError(f"weights in {model_dir / WEIGHTS_FILE} do not fit its config: {exc}") from None
    return model.to(device).eval()


def _build_from_config(config: dict[str, Any], model_dir: Path) -> Classifier:
    from vizsla.models.heads import MLPHead
    from vizsla.models.registry import create_backbone

    preprocessing = config["preprocessing"]
    size = preprocessing.get("input_size") or [3, 0, 0]
    try:
        backbone, _ = create_backbone(config["arch"], "none", image_size=int(size[-1]) or None)
        head_cfg = config["head"]
        head = MLPHead(int(backbone.num_features), int(config["num_classes"]), head_cfg["hidden"],
                       float(head_cfg["dropout"]), head_cfg["activation"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model config {model_dir / CONFIG_FILE} is garbled: {exc!r}") from None
    return Classifier(config["arch"], backbone, head, config["labels"], preprocessing, config.get("weights"))
