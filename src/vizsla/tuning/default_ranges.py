"""Default ranges for `vizsla tune --space lr,batch_size`: name the hyperparameters, get ranges people use.

The learning-rate and batch-size ranges are the seed dog-breed project's (its notebook's
`ContinuousParameter(0.001, 0.1)` and `CategoricalParameter([32, 64, 128, 256, 512])`); the others are the
usual fine-tuning ranges, and timm's training recipes' for its options (layer decay 0.6-1.0, mixup alpha
up to 0.8, cutmix alpha up to 1.0, EMA decay 0.99-0.9999, random erasing up to 0.5). The chosen ranges are
printed and saved in the tuning job's tune.yaml, so a job started from names is as reproducible as one
started from a YAML file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vizsla.errors import SpecError
from vizsla.tuning.space import resolve_path

DEFAULT_RANGES: dict[str, dict[str, Any]] = {
    "train.lr": {"type": "Continuous", "min": 0.001, "max": 0.1, "scaling": "Logarithmic"},
    "train.batch_size": {"type": "Categorical", "values": [32, 64, 128, 256, 512]},
    "train.weight_decay": {"type": "Continuous", "min": 1e-6, "max": 1e-2, "scaling": "Logarithmic"},
    "train.epochs": {"type": "Integer", "min": 2, "max": 20},
    "train.label_smoothing": {"type": "Continuous", "min": 0.0, "max": 0.2},
    "train.warmup_epochs": {"type": "Continuous", "min": 0.0, "max": 2.0},
    "train.optimizer": {"type": "Categorical", "values": ["adamw", "sgd", "lamb", "lion"]},
    "train.schedule": {
        "type": "Categorical",
        "values": ["cosine", "onecycle", "constant", "step", "multistep", "poly", "tanh"],
    },
    "train.layer_decay": {"type": "Continuous", "min": 0.6, "max": 1.0},
    "train.mixup": {"type": "Continuous", "min": 0.0, "max": 0.8},
    "train.cutmix": {"type": "Continuous", "min": 0.0, "max": 1.0},
    "train.mixup_prob": {"type": "Continuous", "min": 0.5, "max": 1.0},
    # dense near 1: 1 - decay is sampled log-uniformly, an average over 100 to 10,000 steps
    "train.ema_decay": {"type": "Continuous", "min": 0.99, "max": 0.9999, "scaling": "ReverseLogarithmic"},
    "train.accumulate_steps": {"type": "Integer", "min": 1, "max": 4},
    "train.bn_policy": {"type": "Categorical", "values": ["train", "frozen"]},
    "train.staged_head_epochs": {"type": "Integer", "min": 1, "max": 20},
    "model.head_dropout": {"type": "Continuous", "min": 0.0, "max": 0.5},
    # "none" is off (the spec reads it as no policy); RandAugment as timm's ImageNet recipes use it
    "data.auto_augment": {
        "type": "Categorical",
        "values": ["none", "rand-m9-mstd0.5-inc1", "trivialaugment"],
    },
    "data.random_erasing": {"type": "Continuous", "min": 0.0, "max": 0.5},
}
_NAMES = re.compile(r"^[A-Za-z_][\w.\-]*(\s*,\s*[A-Za-z_][\w.\-]*)*$")


def is_name_list(space: str | Path) -> bool:
    """Whether --space names hyperparameters ('lr,batch_size') rather than a file."""
    text = str(space)
    if Path(text).exists() or text.endswith((".yaml", ".yml", ".json")):
        return False
    return bool(_NAMES.match(text))


def ranges_from_names(text: str) -> dict[str, dict[str, Any]]:
    """{name: range} for the comma-separated hyperparameter NAMES, with the default range of each."""
    ranges: dict[str, dict[str, Any]] = {}
    for name in (part.strip() for part in text.split(",") if part.strip()):
        path = resolve_path(name)
        if path not in DEFAULT_RANGES:
            known = ", ".join(sorted(p.split(".", 1)[1] for p in DEFAULT_RANGES))
            raise SpecError(
                f"--space: no default range for {name!r} ({path})",
                hint=f"name one of {known}, or give its range in a YAML file (--space space.yaml)",
            )
        ranges[name] = dict(DEFAULT_RANGES[path])
    return ranges


def describe(ranges: dict[str, dict[str, Any]]) -> str:
    """One line per range, for the console."""
    lines = []
    for name, spec in ranges.items():
        if spec["type"] == "Categorical":
            lines.append(f"{name}: one of {spec['values']}")
        else:
            scale = {"Logarithmic": " (log scale)", "ReverseLogarithmic": " (log scale of 1 - x)"}.get(
                spec.get("scaling", ""), ""
            )
            lines.append(f"{name}: {spec['type'].lower()} {spec['min']:g} to {spec['max']:g}{scale}")
    return "; ".join(lines)
