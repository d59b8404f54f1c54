"""Relocatable job folders: paths into a job folder are written relative to it and read back where it is.

A job folder (training, script or tuning job) names no absolute path to itself, so it can be moved, copied
or renamed: paths into the folder are written relative to it ("." is the folder, "model" its model/), and
read back against where the folder is now. Folders written before that hold absolute paths under their
first location (their spec's output, their result's job_dir / tune_dir): readers move those along.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

HERE = "."  # how a job folder names itself in its spec.yaml (output) and result.json (job_dir)
RESULT_PATH_KEYS = frozenset({"job_dir", "tune_dir", "best_model_path", "model_path", "code_dir",
                              "debug_hook_config"})
URI_KEYS = frozenset({"tracking_uri", "storage"})
_PATH_URI_PREFIXES = ("sqlite:///", "file://")
StrPath = str | os.PathLike[str]


def _inside(path: Path, root: Path) -> Path | None:
    """PATH relative to ROOT when it lies inside it (both made absolute, links resolved), else None."""
    try:
        return Path(path).expanduser().resolve().relative_to(Path(root).resolve())
    except (ValueError, OSError, RuntimeError):
        return None


def relative_to_job(path: StrPath, root: StrPath) -> str:
    """How PATH is written inside the job folder ROOT: relative ("model", "." for ROOT) when it lies
    inside, else as given (data folders, caches and stores elsewhere stay absolute)."""
    rel = _inside(Path(path), Path(root))
    return str(path) if rel is None else rel.as_posix()


def resolve_in_job(value: str, root: StrPath, origin: StrPath | None = None) -> str:
    """A path read from inside the job folder ROOT, as an absolute path where the folder is now.

    Relative values are relative to ROOT; an absolute value under ORIGIN (where a folder written with
    absolute paths first was) is moved along with the folder; any other absolute value is kept."""
    path = Path(value)
    here = Path(root).resolve()
    if not path.is_absolute():
        return str(here / path) if value not in ("", HERE) else str(here)
    if origin is not None:
        old = Path(origin)
        if old.is_absolute() and old != here:
            try:
                return str(here / path.relative_to(old))
            except ValueError:
                pass
    return value


def _split_path_uri(uri: str) -> tuple[str, str, str] | None:
    """(prefix, path, query) of a URI naming a local file (sqlite:///, file://, or a bare path)."""
    for prefix in _PATH_URI_PREFIXES:
        if uri.startswith(prefix):
            path, sep, query = uri[len(prefix):].partition("?")
            return prefix, path, sep + query
    if uri.startswith("/"):
        return "", uri, ""  # a bare absolute path (an MLflow file store, an Optuna journal)
    return None  # a server (http://, postgresql://, databricks) or a name: not a file in the folder


def relative_uri_to_job(uri: str | None, root: StrPath) -> str | None:
    """A store URI as written inside the job folder ROOT: its file relative to ROOT when inside, else
    absolute (a relative file is taken from the current directory, as the tools that open it do)."""
    parts = _split_path_uri(uri) if uri else None
    if parts is None or not parts[1] or parts[1] == ":memory:":
        return uri
    prefix, path, query = parts
    rel = _inside(Path(path), Path(root))
    if rel is not None:
        return f"{prefix}{rel.as_posix()}{query}"
    if prefix == "file://":
        return uri
    return f"{prefix}{Path(path).expanduser().resolve()}{query}"


def resolve_uri_in_job(
    uri: str | None, root: StrPath, origin: StrPath | None = None, *, relative_is_job: bool = True
) -> str | None:
    """A store URI read from inside the job folder ROOT, its file made absolute where the folder is now
    (relative: from ROOT when RELATIVE_IS_JOB, i.e. written by `relative_uri_to_job`)."""
    parts = _split_path_uri(uri) if uri else None
    if parts is None or not parts[1] or parts[1] == ":memory:":
        return uri
    prefix, path, query = parts
    if not Path(path).is_absolute() and not relative_is_job:
        return uri
    return f"{prefix}{resolve_in_job(path, root, origin)}{query}"


def saved_spec_mapping(dumped: dict[str, Any]) -> dict[str, Any]:
    """A job spec (model_dump) as its folder keeps it in spec.yaml: output "." and a tracking store
    inside the folder relative to it (see `placed_spec_mapping`)."""
    root = dumped["output"]
    tracking = dumped.get("tracking")
    if isinstance(tracking, dict) and isinstance(tracking.get("uri"), str):
        tracking["uri"] = relative_uri_to_job(tracking["uri"], root)
    return {**dumped, "output": HERE}


def placed_spec_mapping(mapping: dict[str, Any], root: StrPath) -> dict[str, Any]:
    """A spec.yaml mapping read from the job folder ROOT, placed where the folder is now: output ROOT
    and its tracking store resolved; a spec written with absolute paths has the ones under its old
    output moved along."""
    root = Path(root).expanduser().resolve()
    saved = mapping.get("output")
    origin = saved if isinstance(saved, str) and Path(saved).is_absolute() else None
    tracking = mapping.get("tracking")
    if isinstance(tracking, dict) and isinstance(tracking.get("uri"), str):
        tracking = {**tracking, "uri": resolve_uri_in_job(tracking["uri"], root, origin,
                                                          relative_is_job=saved == HERE)}
        mapping = {**mapping, "tracking": tracking}
    return {**mapping, "output": str(root)}


def _remap_tree(value: Any, root: Path, origin: Path) -> Any:
    """Every absolute path string under ORIGIN in VALUE (dicts, lists) moved to the same place under ROOT."""
    if isinstance(value, dict):
        return {key: _remap_tree(item, root, origin) for key, item in value.items()}
    if isinstance(value, list):
        return [_remap_tree(item, root, origin) for item in value]
    if isinstance(value, str):
        for prefix in ("", *_PATH_URI_PREFIXES):
            if value.startswith(prefix + str(origin)):
                return prefix + resolve_in_job(value[len(prefix):], root, origin)
    return value


def _map_keys(value: Any, path_fn: Any, uri_fn: Any) -> Any:
    """VALUE with PATH_FN applied to the RESULT_PATH_KEYS strings and URI_FN to the URI_KEYS ones."""
    if isinstance(value, list):
        return [_map_keys(item, path_fn, uri_fn) for item in value]
    if not isinstance(value, dict):
        return value
    mapped = {}
    for key, item in value.items():
        if key in RESULT_PATH_KEYS and isinstance(item, str):
            mapped[key] = path_fn(item)
        elif key in URI_KEYS and isinstance(item, str):
            mapped[key] = uri_fn(item)
        else:
            mapped[key] = _map_keys(item, path_fn, uri_fn)
    return mapped


def relative_record(record: dict[str, Any], root: StrPath) -> dict[str, Any]:
    """RECORD (a result.json) as written inside the folder ROOT: its paths into the folder relative."""
    return _map_keys(record, lambda p: relative_to_job(p, root), lambda u: relative_uri_to_job(u, root))


def resolved_record(record: dict[str, Any], root: StrPath,
                    origin: StrPath | None = None) -> dict[str, Any]:
    """RECORD read from the folder ROOT with its paths absolute where the folder is now; ORIGIN (the
    folder's first location, for records written with absolute paths) maps old paths along."""
    here = Path(root).resolve()
    if origin is not None and Path(origin).is_absolute() and Path(origin) != here:
        record = _remap_tree(record, here, Path(origin))
    written_relative = origin is None  # an old record's relative store URIs are from its working directory
    return _map_keys(record, lambda p: resolve_in_job(p, here),
                     lambda u: resolve_uri_in_job(u, here, relative_is_job=written_relative))


def recorded_origin(record: dict[str, Any], key: str = "job_dir") -> Path | None:
    """Where a folder was when RECORD was written with absolute paths (its KEY), else None."""
    value = record.get(key) if isinstance(record, dict) else None
    return Path(value) if isinstance(value, str) and Path(value).is_absolute() else None
