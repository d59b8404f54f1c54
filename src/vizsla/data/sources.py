"""Remote image folders (s3://, gs://, az://, ...) copied to a local cache, like SageMaker's File input mode.

The training code only ever reads local files: `materialize` turns a URI into a local folder and keeps that
folder in sync with the remote prefix (new and changed objects downloaded, deleted ones removed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vizsla.errors import DataError
from vizsla.infra.io import atomic_write_json, file_lock

log = logging.getLogger(__name__)

DOWNLOAD_THREADS = 8
MANIFEST_VERSION = 1
_PART_SUFFIX = ".part"
# Keys that change when a remote object changes, most specific first (S3/Azure ETag, GCS hashes, mtimes).
_VERSION_KEYS = "ETag etag md5Hash generation crc32c mtime LastModified last_modified updated created".split()
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
# Exceptions from these SDKs (no credentials, endpoint unreachable) are the user's environment, not a bug.
_CLOUD_SDK_MODULES = ("botocore", "aiobotocore", "google", "azure", "adlfs", "gcsfs", "s3fs", "aiohttp")


@dataclass(frozen=True)
class RemoteFile:
    """One remote object: its fsspec path, path relative to the prefix, size in bytes and version token."""

    path: str
    relpath: str
    size: int
    version: str | None


@dataclass(frozen=True)
class MirrorResult:
    """What one sync of a remote prefix into a local folder did."""

    local: Path
    downloaded: int
    unchanged: int
    removed: int
    bytes_downloaded: int

    def summary(self) -> str:
        """One line for logs and the CLI."""
        return (
            f"{self.downloaded} downloaded ({self.bytes_downloaded / 1e6:.1f} MB), "
            f"{self.unchanged} unchanged, {self.removed} removed"
        )


def is_remote(uri: str) -> bool:
    """True when the URI names a non-local fsspec filesystem (s3://, gs://, memory://, chained URLs)."""
    from fsspec.utils import get_protocol

    return get_protocol(str(uri)) not in ("file", "local")


def default_cache_root() -> Path:
    """Remote datasets cache: `datasets/` under the shared cache ($VIZSLA_CACHE_DIR or ~/.cache/vizsla)."""
    from vizsla.cache import cache_dir

    return cache_dir("datasets")


def materialize(
    uri: str,
    storage_options: dict | None = None,
    cache_root: Path | None = None,
    *,
    progress: bool = True,
) -> Path:
    """Return a local folder holding the files under URI: local paths as they are, remote ones cached."""
    if not is_remote(uri):
        return _local_path(uri)
    fs, root = _open_fs(uri, storage_options or {})
    key = hashlib.sha256(_canonical(fs, root).encode("utf-8")).hexdigest()[:16]
    cache_root = Path(cache_root) if cache_root is not None else default_cache_root()
    local = cache_root / key
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the dataset cache folder {cache_root}: {exc}",
            hint="set VIZSLA_CACHE_DIR to a writable folder",
        ) from exc
    with file_lock(cache_root / f"{key}.lock"):
        result = _mirror(fs, root, uri, local, cache_root / f"{key}.json", progress)
    log.info("%s -> %s: %s", uri, local, result.summary())
    return local.resolve()


def mirror(
    uri: str,
    local: Path,
    storage_options: dict | None = None,
    *,
    progress: bool = True,
    manifest: Path | None = None,
) -> MirrorResult:
    """Make LOCAL an exact copy of the files under remote URI, downloading only what changed."""
    fs, root = _open_fs(uri, storage_options or {})
    local = Path(local)
    manifest = Path(manifest) if manifest is not None else local.with_name(local.name + ".json")
    return _mirror(fs, root, uri, local, manifest, progress)


def _mirror(fs: Any, root: str, uri: str, local: Path, manifest: Path, progress: bool) -> MirrorResult:
    remote = list_remote(fs, root, uri)
    canonical = _canonical(fs, root)
    known = _read_manifest(manifest, canonical)
    local.mkdir(parents=True, exist_ok=True)
    todo = [f for f in remote if not _is_current(local, f, known.get(f.relpath))]
    removed = _remove_stale(local, {f.relpath for f in remote})
    pending = {f.relpath for f in todo}
    good = {f.relpath: f for f in remote if f.relpath not in pending}
    try:
        done_bytes = _download_all(fs, todo, uri, local, progress, good)
    finally:
        entries = {rel: {"size": f.size, "version": f.version} for rel, f in sorted(good.items())}
        atomic_write_json(manifest, {"version": MANIFEST_VERSION, "uri": canonical, "files": entries})
    return MirrorResult(local, len(todo), len(remote) - len(todo), removed, done_bytes)


def list_remote(fs: Any, root: str, uri: str) -> list[RemoteFile]:
    """List the files under ROOT with their sizes and version tokens; DataError when there are none."""
    with _translated(uri, "list"):
        fs.invalidate_cache(root)
        found = fs.find(root, detail=True)
    base = root.rstrip("/")
    files = []
    for name, info in sorted(found.items()):
        if info.get("type") == "directory" or name.endswith("/"):
            continue  # S3 "folder" marker objects hold no data
        rel = posixpath.basename(name) if name == base else _relative(name, base, uri)
        if rel is not None:
            files.append(RemoteFile(name, rel, int(info.get("size") or 0), _version(info)))
    files = _drop_folder_objects(files, uri)
    if not files:
        raise DataError(
            f"no files found under {uri}",
            hint="check the bucket and prefix (and the endpoint in storage_options)",
        )
    return files


def _drop_folder_objects(files: list[RemoteFile], uri: str) -> list[RemoteFile]:
    """Skip empty objects named like a folder of other objects; refuse non-empty ones (no local form)."""
    folders = {p for f in files for p in _parents(posixpath.dirname(f.relpath))}
    clashes = [f for f in files if f.relpath in folders]
    for f in clashes:
        if f.size:
            raise DataError(
                f"{uri} holds both an object {f.path!r} and objects below it as a folder",
                hint="a local folder cannot be a file too: rename or delete one of them",
            )
    return [f for f in files if f.relpath not in folders]


def _parents(folder: str) -> list[str]:
    parts = folder.split("/") if folder else []
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _local_path(uri: str) -> Path:
    path = str(uri)
    for prefix in ("file://", "local://"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
    return Path(path).expanduser().resolve()


def _canonical(fs: Any, root: str) -> str:
    """One spelling per remote prefix (s3a:// = s3://, with or without a trailing slash)."""
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else str(fs.protocol)
    return f"{protocol}://{root.rstrip('/')}"


def _open_fs(uri: str, storage_options: dict) -> tuple[Any, str]:
    """Create the fsspec filesystem for URI, turning a missing backend or unknown protocol into DataError."""
    from fsspec.core import url_to_fs
    from fsspec.utils import get_protocol

    protocol = get_protocol(uri)
    try:
        return url_to_fs(uri, **storage_options)
    except ImportError as exc:
        extra = _EXTRAS.get(protocol)
        hint = f"install it: pip install 'vizsla[{extra}]'" if extra else "install the fsspec backend for it"
        raise DataError(f"cannot read {uri}: {exc}", hint=hint) from exc
    except ValueError as exc:
        if "protocol" not in str(exc).lower():
            raise
        raise DataError(
            f"cannot read {uri}: unknown protocol {protocol!r}",
            hint="use a local path or an fsspec URI such as s3://bucket/prefix",
        ) from exc


@contextlib.contextmanager
def _translated(uri: str, action: str) -> Iterator[None]:
    """Turn storage errors (missing bucket, denied access, unreachable endpoint) into DataError."""
    try:
        yield
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(
            f"cannot {action} {uri}: not found ({exc})", hint="check the bucket/container name and the prefix"
        ) from exc
    except PermissionError as exc:
        raise DataError(
            f"cannot {action} {uri}: access denied ({exc})",
            hint="check the credentials and that they may read this bucket",
        ) from exc
    except Exception as exc:
        module = type(exc).__module__.split(".")[0]
        if not isinstance(exc, OSError) and module not in _CLOUD_SDK_MODULES:
            raise
        raise DataError(
            f"cannot {action} {uri}: {type(exc).__name__}: {exc}",
            hint="check the credentials, the endpoint and the network",
        ) from exc


def _relative(name: str, base: str, uri: str) -> str | None:
    """Path of NAME below BASE, refusing keys that would escape the cache folder ('..', absolute)."""
    prefix = base + "/" if base else ""
    if not name.startswith(prefix):
        return None
    rel = name[len(prefix) :].lstrip("/")
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise DataError(
            f"{uri} holds an object named {name!r} that cannot be stored as a local file",
            hint="rename the object: empty, '.' and '..' path parts are not allowed",
        )
    return rel


def _version(info: dict[str, Any]) -> str | None:
    for key in _VERSION_KEYS:
        if info.get(key) is not None:
            return str(info[key])
    return None


def _read_manifest(path: Path, uri: str) -> dict[str, dict[str, Any]]:
    """Sizes and versions recorded by the last sync; empty when missing, unreadable or for another URI."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION or data.get("uri") != uri:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _is_current(local: Path, remote: RemoteFile, known: dict[str, Any] | None) -> bool:
    """A cached file is current when its size matches and the recorded version equals the remote one."""
    path = local / remote.relpath
    try:
        if not path.is_file() or path.stat().st_size != remote.size:
            return False
    except OSError:
        return False
    if remote.version is None:
        return True
    return known is not None and known.get("version") == remote.version


def _remove_stale(local: Path, keep: set[str]) -> int:
    """Delete cached files the remote no longer has (and leftover partial downloads), then empty folders."""
    removed = 0
    for path in sorted(local.rglob("*"), reverse=True):
        rel = path.relative_to(local).as_posix()
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()  # only succeeds when empty
        elif rel not in keep:
            path.unlink(missing_ok=True)
            removed += 0 if path.name.endswith(_PART_SUFFIX) else 1
    return removed


def _download_all(
    fs: Any, todo: list[RemoteFile], uri: str, local: Path, progress: bool, good: dict[str, RemoteFile]
) -> int:
    """Download TODO with a thread pool; each finished file is added to GOOD (kept in the manifest)."""
    if not todo:
        return 0
    total = sum(f.size for f in todo)
    errors: list[Exception] = []
    with _progress_bar(progress, uri, total) as advance:
        pool = ThreadPoolExecutor(DOWNLOAD_THREADS, thread_name_prefix="vizsla-download")
        try:
            futures = {pool.submit(_download_one, fs, f, uri, local, advance): f for f in todo}
            for future, remote in futures.items():
                try:
                    future.result()
                    good[remote.relpath] = remote
                except Exception as exc:  # let the others finish so their work is kept; report the first
                    errors.append(exc)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: drop queued downloads, not wait for them
    if errors:
        raise errors[0]
    return total


def _download_one(fs: Any, remote: RemoteFile, uri: str, local: Path, advance: Any) -> None:
    """Download to a hidden temp name and rename, so a killed copy never leaves a complete-looking file."""
    dest = local / remote.relpath
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}{_PART_SUFFIX}")
    callback = _byte_callback(advance)
    try:
        with _translated(uri, "download"):
            fs.get_file(remote.path, str(tmp), callback=callback)
        size = tmp.stat().st_size
        if size != remote.size:
            raise DataError(
                f"download of {remote.path} from {uri} stopped at {size} of {remote.size} bytes",
                hint="run again; the remote object may have changed during the copy",
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    advance(max(0, remote.size - callback.value))


def _byte_callback(advance: Any) -> Any:
    """An fsspec callback that forwards each chunk's byte count to ADVANCE."""
    from fsspec.callbacks import Callback

    seen = [0]

    def hook(_size: int | None, value: int) -> None:
        advance(value - seen[0])
        seen[0] = value

    return Callback(hooks={"bytes": hook})


@contextlib.contextmanager
def _progress_bar(enabled: bool, uri: str, total: int) -> Iterator[Any]:
    """Yield advance(n_bytes); a rich byte progress bar on stderr when enabled."""
    if not enabled:
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"downloading {uri}", total=total)
        yield lambda n: bar.advance(task, n)


open_fs = _open_fs  # public name for other packages (vizsla.transform lists prefixes with it)
