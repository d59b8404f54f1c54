"""Numbers, durations and timestamps as people read them, the same in every report and listing.

The training, tuning and profiler reports and `vizsla jobs` show the same kinds of values; formatting
them in one place keeps a duration or a metric looking the same wherever it appears.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any


def format_duration(seconds: float | None) -> str:
    """Durations as people read them: 45.2s, 12m 03s, 2h 05m 09s."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def format_number(value: Any) -> str:
    """Metrics with 4 decimals, tiny values (learning rates) in scientific notation, the rest as text."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.4f}"


def format_time(iso: str | None) -> str:
    """An ISO-8601 timestamp as local 'YYYY-MM-DD HH:MM:SS'; unparsable text is shown as it is."""
    if not iso:
        return "—"
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso
