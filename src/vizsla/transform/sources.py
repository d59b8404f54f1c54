"""The inputs of a transform: a folder, an fsspec prefix, a SageMaker manifest or a CSV of paths.

Every source becomes one list of `InputFile`s sorted by key (the name below the source, which names the
output `<key>.out`), so two runs, or N shard workers, see the same order. A shard is picked by a hash of the
key, not by position: adding files to the source moves no other file to another shard.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vizsla.errors import DataError

CSV_HEADERS = {"path", "file", "filename", "uri", "location", "image", "s3_uri", "source-ref"}


@dataclass(frozen=True)
class InputFile:
    """One input: KEY names its output (`KEY.out`), LOCATION is a local path or a full fsspec URI."""

    key: str
    location: str


class Source:
    """Reads the bytes of inputs, local or remote (one fsspec filesystem per remote protocol)."""

    def __init__(self, storage_options: dict[str, Any] | None = None) -> None:
        self.storage_options = dict(storage_options or {})

    def read(self, location: str) -> bytes:
        """The file's bytes; OSError (or a cloud SDK's error) when it cannot be read."""
        if not _is_remote(location):
            return Path(_local(location)).read_bytes()
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(location, **self.storage_options)
        return fs.cat_file(path)


def _is_remote(uri: str) -> bool:
    from vizsla.data.sources import is_remote

    return "://" in uri and is_remote(uri)


def _local(uri: str) -> str:
    return uri.removeprefix("file://")


def list_inputs(data: str, data_type: str = "auto", storage_options: dict[str, Any] | None = None,
                exclude: Path | None = None) -> list[InputFile]:
    """Every input of DATA sorted by key; DataError naming DATA when it has none or cannot be read."""
    options = dict(storage_options or {})
    kind = _kind(data, data_type, options)
    if kind == "folder":
        files = _folder(Path(_local(data)).expanduser(), exclude)
    elif kind == "prefix":
        files = _prefix(data, options)
    else:
        text = _read_text(data, options)
        files = _manifest(text, data) if kind == "ManifestFile" else _csv_paths(text, data)
    if not files:
        raise DataError(f"no input files found in {data}", hint="point --data at a folder of images, a "
                        "prefix, a manifest or a CSV of paths")
    return _checked(sorted(files, key=lambda f: f.key), data)


def _kind(data: str, data_type: str, options: dict[str, Any]) -> str:
    """folder | prefix | ManifestFile | csv."""
    if data_type in ("ManifestFile", "csv"):
        return data_type
    if _is_remote(data):
        if data_type == "S3Prefix":
            return "prefix"
        from vizsla.data.sources import open_fs

        fs, path = open_fs(data, options)
        if _exists_as_file(fs, path):
            return "csv" if path.lower().endswith(".csv") else "ManifestFile"
        return "prefix"
    path = Path(_local(data)).expanduser()
    if path.is_dir():
        return "folder"
    if path.is_file() and data_type == "auto":
        return "csv" if path.suffix.lower() == ".csv" else "ManifestFile"
    raise DataError(f"input not found: {data}", hint="--data takes a folder, an s3:// prefix, a manifest "
                    "or a CSV of paths")


def _exists_as_file(fs: Any, path: str) -> bool:
    try:
        return bool(fs.isfile(path))
    except Exception:  # noqa: BLE001 - a prefix with no object of its own name: listed below
        return False


def _folder(root: Path, exclude: Path | None) -> list[InputFile]:
    """Every file below ROOT, keyed by its POSIX path below ROOT (hidden files kept; linked folders not
    entered, so no loops)."""
    files = []
    skip = exclude.resolve() if exclude is not None else None
    for folder, dirs, names in os.walk(root):
        if skip is not None and Path(folder).resolve() == skip:
            dirs[:] = []
            continue
        dirs.sort()
        for name in names:
            path = Path(folder) / name
            files.append(InputFile(path.relative_to(root).as_posix(), str(path)))
    return files


def _prefix(uri: str, options: dict[str, Any]) -> list[InputFile]:
    """Every object under the prefix (DataError naming URI when it holds none or cannot be listed)."""
    from vizsla.data.sources import list_remote, open_fs

    fs, root = open_fs(uri, options)
    protocol = uri.split("://", 1)[0]
    return [InputFile(f.relpath, f"{protocol}://{f.path.lstrip('/')}") for f in list_remote(fs, root, uri)]


def _read_text(data: str, options: dict[str, Any]) -> str:
    try:
        raw = Source(options).read(data)
    except OSError as exc:
        raise DataError(f"cannot read {data}: {exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{data} is not UTF-8 text: {exc}") from None


def _manifest(text: str, where: str) -> list[InputFile]:
    """SageMaker's ManifestFile: [{"prefix": P}, "rel/a", ...] as one JSON array or one value a line;
    {"source-ref": URI} lines (augmented manifests) too."""
    try:
        entries = json.loads(text)
        entries = entries if isinstance(entries, list) else [entries]
    except json.JSONDecodeError:
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{where} line {number} is not JSON: {exc.msg}",
                                hint='a manifest holds [{"prefix": "s3://..."}, "rel/path", ...]') from None
    prefix = None
    if entries and isinstance(entries[0], dict) and "prefix" in entries[0]:
        prefix = str(entries.pop(0)["prefix"])
    locations = []
    for entry in entries:
        if isinstance(entry, dict) and "source-ref" in entry:
            entry = entry["source-ref"]
        if not isinstance(entry, str) or not entry:
            raise DataError(f"{where}: a manifest entry must be a path string, got {entry!r}")
        locations.append(_join(prefix, entry) if prefix else _beside(where, entry))
    return _keyed(locations, prefix, where)


def _csv_paths(text: str, where: str) -> list[InputFile]:
    """A CSV whose first column holds paths or URIs (relative ones below the CSV's folder)."""
    rows = [row for row in csv.reader(io.StringIO(text)) if row and row[0].strip()]
    if rows and rows[0][0].strip().lower() in CSV_HEADERS:
        rows = rows[1:]
    return _keyed([_beside(where, row[0].strip()) for row in rows], None, where)


def _join(prefix: str, rel: str) -> str:
    return prefix.rstrip("/") + "/" + rel.lstrip("/")


def _beside(where: str, entry: str) -> str:
    """ENTRY as a location: a URI or absolute path as it is, a relative one below WHERE's folder."""
    if "://" in entry or os.path.isabs(entry):
        return entry
    return _join(posixpath.dirname(where) if "://" in where else str(Path(where).parent), entry)


def _keyed(locations: list[str], prefix: str | None, where: str) -> list[InputFile]:
    """Keys relative to PREFIX, else to the deepest folder holding every location."""
    if not locations:
        return []
    base = prefix.rstrip("/") if prefix else _common_folder(locations)
    files = []
    for location in locations:
        key = location[len(base):].lstrip("/") if location.startswith(base) else location
        files.append(InputFile(key, location))
    return files


def _common_folder(locations: list[str]) -> str:
    """The deepest folder holding every location, by '/'-separated parts (URIs keep their '//')."""
    folders = [location.split("/")[:-1] for location in locations]
    common: list[str] = []
    for parts in zip(*folders, strict=False):
        if any(part != parts[0] for part in parts):
            break
        common.append(parts[0])
    return "/".join(common)


def _checked(files: list[InputFile], where: str) -> list[InputFile]:
    """Refuse keys that would write outside the output folder, and two inputs with one output name."""
    seen: set[str] = set()
    for item in files:
        parts = item.key.split("/")
        if not item.key or any(part in ("", ".", "..") for part in parts):
            raise DataError(f"{where}: input {item.location!r} has no safe output name ({item.key!r})",
                            hint="empty, '.' and '..' path parts are not allowed")
        if item.key in seen:
            raise DataError(f"{where} names {item.key!r} twice: each input needs its own output name")
        seen.add(item.key)
    return files


def shard_of(key: str, count: int) -> int:
    """The shard (0..COUNT-1) KEY belongs to: a hash of its bytes, stable across runs and machines."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(files: list[InputFile], index: int, count: int) -> list[InputFile]:
    """The files of shard INDEX of COUNT, in their order."""
    if count == 1:
        return list(files)
    return [f for f in files if shard_of(f.key, count) == index]


def inputs_digest(files: list[InputFile]) -> str:
    """One digest of the ordered keys: a resumed run must see the same inputs in the same order."""
    digest = hashlib.sha256()
    for item in files:
        digest.update(item.key.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()
