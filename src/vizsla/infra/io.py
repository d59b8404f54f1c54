"""Files written whole or not at all, JSON-lines records, and an advisory lock between processes.

Every writer of a job's outputs, caches and reports goes through here, so readers (other processes, a
resumed job, a browser reloading a report) never see a half-written file or a torn record.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _read_umask() -> int:
    """The process umask, read once at import (os.umask can only be read by setting it: racy later)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + rename, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """atomic_write_bytes of TEXT in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """OBJ as indented JSON (unknown types as their str), written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_jsonl(path: Path) -> list[Any]:
    """All records of a JSON-lines file ([] when it is missing); a torn last line (killed writer) is
    skipped, as is any other line that is not JSON."""
    if not Path(path).is_file():
        return []
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def append_jsonl(path: Path, record: Any) -> None:
    """Append RECORD as one JSON line in a single write, so `tail -f` and other processes see it whole;
    a write that fails (a full disk) is taken back, leaving no torn line for the next record to join."""
    data = (json.dumps(record) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        try:
            done = 0
            while done < len(data):  # a short write: the disk filled up, the next one says so
                done += os.write(fd, data[done:])
        except OSError:
            with contextlib.suppress(OSError):  # (not a regular file: nothing to take back)
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on PATH (fcntl.flock), so two processes (e.g. DDP ranks, parallel jobs)
    do not build or sync one cache at once; a no-op where the OS has none (Windows: the atomic renames
    alone keep the caches valid)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
