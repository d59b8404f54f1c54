"""User-facing errors: the CLI prints their message and exits with code 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad path, bad option, unusable data); never a bug."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n{hint}")


class DataError(UserError):
    """The dataset cannot be used as it is (missing folder, one class, no readable images)."""


class ModelError(UserError):
    """The model cannot be created (unknown name, weights not found offline, bad head)."""


class SpecError(UserError):
    """A job spec value or file is invalid."""


class DiskFullError(UserError):
    """A write found no space left (ENOSPC) or the quota used up (EDQUOT); see vizsla/disk.py.

    PATH is what was being written, NEEDED its size and FREE the space left there, in bytes (None: unknown).
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        path: str | None = None,
        needed: int | None = None,
        free: int | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.path, self.needed, self.free = path, needed, free
