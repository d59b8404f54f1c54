"""Temporarily raised log levels, for libraries that log routine advice at INFO or WARNING on every call.

Used around ONNX export and quantisation (their optimisers and quantiser log every pass) and for the
ranks of a distributed job other than rank 0 (one process's INFO lines are enough).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def logger_levels(level: int, *names: str | None) -> Iterator[None]:
    """Set the loggers NAMES (None: the root logger) to LEVEL for the block, then restore their levels."""
    loggers = [logging.getLogger(name) for name in names]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, previous, strict=True):
            logger.setLevel(old)
