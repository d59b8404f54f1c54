"""A full disk (ENOSPC) or a used-up quota (EDQUOT): one clear error that names the path and the space.

Every write of a job that can meet a full disk (checkpoints, metrics, the best model, the feature cache,
the data report, result.json) runs inside `writing(path, needed=...)`, which turns the OSError into a
DiskFullError (a UserError: the CLI prints its message, exit code 2, no traceback). The writes are atomic
(temp file + rename), so the failed one leaves the previous file, e.g. the last good checkpoint, in place.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from vizsla.errors import DiskFullError

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Whether EXC is (or was caused by) an OSError for a full disk or a used-up quota."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes an unprivileged process may still write on PATH's file system (its nearest existing folder)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def format_bytes(size: float) -> str:
    """1.2 MB, 640 kB, 12 bytes (decimal units, as `df -H` shows them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} bytes"


def disk_full_error(
    exc: OSError, path: str | os.PathLike[str], *, needed: int | None = None, what: str | None = None
) -> DiskFullError:
    """The DiskFullError for EXC, raised while writing PATH (NEEDED bytes, when known)."""
    problem = "disk quota exceeded" if exc.errno == errno.EDQUOT else "no space left on the device"
    free = free_bytes(path)
    space = [f"{format_bytes(needed)} needed" if needed else None,
             f"{format_bytes(free)} free there" if free is not None else None]
    detail = ", ".join(s for s in space if s)
    target = f"{what} {path}" if what else str(path)
    message = f"{problem}: cannot write {target}" + (f" ({detail})" if detail else "")
    return DiskFullError(
        message,
        hint="free some space on that file system (or write the output elsewhere)",
        path=str(path),
        needed=needed,
        free=free,
    )


@contextlib.contextmanager
def writing(
    path: str | os.PathLike[str], *, needed: int | None = None, what: str | None = None
) -> Iterator[None]:
    """Turn a full disk met in the block into a DiskFullError about PATH; other errors pass unchanged."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        if exc.errno not in DISK_FULL_ERRNOS:
            raise
        raise disk_full_error(exc, exc.filename or path, needed=needed, what=what) from exc


def as_disk_full_error(exc: BaseException, path: str | os.PathLike[str]) -> DiskFullError | None:
    """EXC as a DiskFullError (it, or one about PATH when EXC is a bare full-disk OSError), else None."""
    if isinstance(exc, DiskFullError):
        return exc
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return disk_full_error(exc, exc.filename or path)
    return None


def preallocate(path: str | os.PathLike[str]) -> None:
    """Reserve the blocks of PATH's whole size now (posix_fallocate), so that a full disk is an ENOSPC here
    rather than a SIGBUS later when a memory map writes into a hole of the sparse file."""
    with open(path, "r+b") as handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            os.posix_fallocate(handle.fileno(), 0, size)
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                raise
        except AttributeError:  # no posix_fallocate on this OS
            pass
