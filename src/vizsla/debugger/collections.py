"""Debugger collections: named regexes over tensor names with their save steps, reductions and modes.

The built-in set mirrors smdebug's (losses, weights, biases, gradients) plus the collections its rule configs
define (relu_output, inputs, labels, predictions). A `DebugSpec` overrides any field of any collection or adds
new ones; `resolve_collections` merges the two once, at hook creation, and the result is written to
`debug/collections.json` so the reader and the rules see the exact configuration that was recorded.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

MODES = ("TRAIN", "EVAL", "PREDICT", "GLOBAL")
REDUCTIONS = ("mean", "std", "min", "max", "l1", "l2", "zero_fraction", "nan_count", "inf_count")
HISTOGRAM = "histogram"
HISTOGRAM_BINS = 64
ALL_REDUCTIONS = (*REDUCTIONS, HISTOGRAM)

_OUTPUTS = r"^(?!.*_relu_output_\d+$).*_output_\d+$"  # module outputs, ReLU outputs have their own collection
# name -> (regex, interval (None = the spec's save_interval), reductions, save_raw, modes, enabled)
_BUILTIN: dict[str, tuple[str, int | None, tuple[str, ...], bool, tuple[str, ...], bool]] = {
    "losses": (r"^loss$", 1, (), True, ("TRAIN", "EVAL"), True),
    "weights": (r"^(?!gradient).*weight$", None, ALL_REDUCTIONS, False, ("TRAIN",), True),
    "biases": (r"^(?!gradient).*bias$", None, ALL_REDUCTIONS, False, ("TRAIN",), True),
    "gradients": (r"^gradient/", None, ALL_REDUCTIONS, False, ("TRAIN",), True),
    "relu_output": (r"_relu_output_\d+$", None, ALL_REDUCTIONS, False, ("TRAIN",), True),
    "outputs": (_OUTPUTS, None, ALL_REDUCTIONS, False, ("TRAIN", "EVAL"), False),
    "inputs": (r"^inputs$", None, ALL_REDUCTIONS, False, ("TRAIN",), True),
    "labels": (r"^labels$", 1, (), True, ("TRAIN", "EVAL"), True),
    "predictions": (r"^predictions$", 1, (), True, ("TRAIN", "EVAL"), True),
}


@dataclass(frozen=True)
class Collection:
    """One resolved collection: which tensors, at which mode steps, stored how."""

    name: str
    include_regex: str
    save_interval: int
    save_steps: tuple[int, ...] = ()
    reductions: tuple[str, ...] = ALL_REDUCTIONS
    save_raw: bool = False
    modes: tuple[str, ...] = ("TRAIN",)
    enabled: bool = True
    mode_intervals: tuple[tuple[str, int], ...] = ()  # (mode, interval) pairs that override save_interval
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", re.compile(self.include_regex))

    def matches(self, tensor_name: str) -> bool:
        return self._pattern.search(tensor_name) is not None

    def should_save(self, mode: str, step: int) -> bool:
        """smdebug's rule: step % interval == 0 (so step 0 is saved) or step in save_steps."""
        if not self.enabled or mode not in self.modes:
            return False
        interval = dict(self.mode_intervals).get(mode, self.save_interval)
        return step % interval == 0 or step in self.save_steps

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_pattern", None)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Collection:
        fields = (
            "name", "include_regex", "save_interval", "save_steps", "reductions", "save_raw", "modes",
            "mode_intervals",
        )  # fmt: skip
        values = {key: data[key] for key in fields if key in data}
        for key in ("save_steps", "reductions", "modes"):
            if key in values:
                values[key] = tuple(values[key])
        if "mode_intervals" in values:
            values["mode_intervals"] = tuple((str(m), int(i)) for m, i in values["mode_intervals"])
        return cls(**values, enabled=bool(data.get("enabled", True)))


def resolve_collections(debug_spec: Any) -> dict[str, Collection]:
    """The built-in collections with the spec's overrides applied (new names become new collections)."""
    interval = int(debug_spec.save_interval)
    spec_modes = dict(getattr(debug_spec, "mode_save_intervals", None) or {})
    overrides = dict(debug_spec.collections or {})
    resolved: dict[str, Collection] = {}
    for name in [*_BUILTIN, *(n for n in overrides if n not in _BUILTIN)]:
        regex, every, reductions, raw, modes, enabled = _BUILTIN.get(
            name, (None, None, ALL_REDUCTIONS, False, ("TRAIN",), True)
        )
        override = overrides.get(name)
        get = (lambda key, default: default) if override is None else _getter(override)
        regex = get("include_regex", regex)
        # the spec-wide per-mode intervals apply where the spec-wide interval does (not every-step ones)
        hook_modes = spec_modes if every is None and get("save_interval", None) is None else {}
        if regex is None:
            from vizsla.errors import SpecError

            raise SpecError(f"debug.collections.{name}: a new collection needs include_regex")
        resolved[name] = Collection(
            name=name,
            include_regex=regex,
            save_interval=int(get("save_interval", every or interval)),
            save_steps=tuple(sorted(get("save_steps", ()))),
            reductions=tuple(get("reductions", reductions)),
            save_raw=bool(get("save_raw", raw)),
            modes=tuple(get("modes", modes)),
            enabled=bool(get("enabled", enabled)),
            mode_intervals=tuple(sorted((get("mode_save_intervals", None) or hook_modes).items())),
        )
    return resolved


def _getter(override: Any) -> Any:
    def get(key: str, default: Any) -> Any:
        value = getattr(override, key, None)
        return default if value is None else value

    return get


def reduce_array(array: np.ndarray) -> dict[str, float]:
    """Scalar reductions of a stored raw tensor, as the hook defines them (std is the population std)."""
    x = np.asarray(array, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return {}
    finite = np.isfinite(x)
    values = x[finite]
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        "min": float(values.min()) if values.size else float("nan"),
        "max": float(values.max()) if values.size else float("nan"),
        "l1": float(np.abs(x).sum()),
        "l2": float(np.sqrt(np.square(x).sum())),
        "zero_fraction": float((x == 0).mean()),
        "nan_count": float(np.isnan(x).sum()),
        "inf_count": float(np.isinf(x).sum()),
    }


def histogram_range(low: float, high: float) -> tuple[float, float]:
    """Histogram range over [min, max] of the finite values; a constant tensor gets [v - 0.5, v + 0.5]."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return 0.0, 1.0
    if high > low:
        return float(low), float(high)
    return float(low) - 0.5, float(low) + 0.5


def histogram_array(array: np.ndarray, bins: int = HISTOGRAM_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(bin_edges, counts) of the finite values of a raw tensor, on the hook's binning."""
    x = np.asarray(array, dtype=np.float64).reshape(-1)
    values = x[np.isfinite(x)]
    low, high = histogram_range(values.min(), values.max()) if values.size else (0.0, 1.0)
    index = np.clip(np.floor((values - low) / (high - low) * bins), 0, bins - 1).astype(np.int64)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    return np.linspace(low, high, bins + 1), counts
