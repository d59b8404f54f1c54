"""Resume a head-only job from a checkpoint whose optimizer held more parameter groups than today's.

A head on cached features used to keep the frozen backbone's groups in its optimizer (they never had a
gradient); it now holds the head's groups alone. Its older checkpoints still resume: the optimizer state and
the schedule's per-group peaks are narrowed to the groups, by name, that the job's optimizer has."""

from __future__ import annotations

from typing import Any


def matching_groups(
    optimizer_state: dict[str, Any], scheduler_state: dict[str, Any], names: list[str | None]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """OPTIMIZER_STATE and SCHEDULER_STATE for an optimizer whose groups are NAMES, in order; unchanged when
    they already match or cannot be matched by name (torch then says what differs)."""
    saved = optimizer_state.get("param_groups") or []
    saved_names = [group.get("name") for group in saved]
    if saved_names == names or None in names or not set(names) <= set(saved_names):
        return optimizer_state, scheduler_state
    kept = [saved_names.index(name) for name in names]
    renumbered: dict[int, int] = {}
    groups = []
    for index in kept:
        params = []
        for old in saved[index]["params"]:
            renumbered[old] = len(renumbered)
            params.append(renumbered[old])
        groups.append({**saved[index], "params": params})
    state = {renumbered[key]: value for key, value in optimizer_state.get("state", {}).items()
             if key in renumbered}
    peaks = scheduler_state.get("peaks")
    if isinstance(peaks, list) and len(peaks) == len(saved):
        scheduler_state = {**scheduler_state, "peaks": [peaks[index] for index in kept]}
    return {"state": state, "param_groups": groups}, scheduler_state
