"""timm's auto-augment policies and random erasing for the train split: policy strings checked, then built.

The policies are timm's own (RandAugment, AutoAugment, AugMix, built by `timm.data.create_transform` with its
hyper-parameters: translation from the image size, the mean colour as fill, the model's interpolation) and
`timm.data.random_erasing.RandomErasing`; this module only checks a policy string before timm sees it (timm
skips unknown sections silently and refuses others with a bare assert) and makes the result reproducible the
way the loader seeds samples. timm has no TrivialAugment: `trivialaugment` / `ta_wide` is torchvision's
`TrivialAugmentWide` (the paper's method: one op an image, uniform magnitude over wide ranges).
"""

from __future__ import annotations

import random
import re
from typing import Any

EXAMPLES = "rand-m9-mstd0.5-inc1 (RandAugment), trivialaugment, augmix-m5-w4-d2, original (AutoAugment)"
TRIVIAL_AUGMENT = ("trivialaugment", "trivialaugmentwide", "ta_wide")
OFF = ("", "none", "off")
# random erasing fills with per-pixel normal noise: timm's train.py default (--remode pixel) for its recipes
ERASING_MODE = "pixel"

# The sections timm's parsers read (timm/data/auto_augment.py), key -> type of its value.
_RAND_SECTIONS = {"m": int, "n": int, "p": float, "mstd": float, "mmax": int, "inc": int}
_RAND_OP_SETS = ("weights", "3a", "3aw")  # rand-...-t<name>; timm falls back to the default set for others
_AUGMIX_SECTIONS = {"m": int, "w": int, "d": int, "a": float, "b": int, "mstd": float}
_AUTO_AUGMENT_POLICIES = ("original", "originalr", "v0", "v0r", "3a")
_AUTO_AUGMENT_SECTIONS = {"mstd": float}


def _problem(value: str, why: str) -> ValueError:
    return ValueError(f"auto_augment {value!r}: {why}; valid examples: {EXAMPLES}")


def _check_sections(
    value: str, sections: list[str], known: dict[str, type], op_sets: tuple[str, ...]
) -> None:
    """Each dash-separated SECTION is KEY<number> with a known key (or t<op set> for RandAugment)."""
    for section in sections:
        if op_sets and section.startswith("t"):
            if section[1:] not in op_sets:
                raise _problem(value, f"unknown op set {section!r} (t{', t'.join(op_sets)})")
            continue
        parts = re.split(r"(\d.*)", section)  # timm's own split: letters, then the number
        key, number = (parts[0], parts[1]) if len(parts) >= 2 else (section, "")
        if key not in known:
            keys = ", ".join(f"{k}<{t.__name__}>" for k, t in known.items())
            raise _problem(value, f"unknown section {section!r} (use {keys})")
        try:
            parsed = known[key](number)
        except ValueError:
            raise _problem(value, f"{section!r} needs an {known[key].__name__} after {key!r}") from None
        if key == "p" and not 0 <= parsed <= 1:
            raise _problem(value, f"{section!r}: the probability must be within 0-1")


def normalize_policy(value: str | None) -> str | None:
    """VALUE as the canonical policy string (lower case; None when off), or ValueError naming the problem."""
    if value is None or value.strip().lower() in OFF:
        return None
    policy = value.strip().lower()
    if policy in TRIVIAL_AUGMENT:
        return "trivialaugment"
    name, *sections = policy.split("-")
    if name == "rand":
        _check_sections(value, sections, _RAND_SECTIONS, _RAND_OP_SETS)
    elif name == "augmix":
        _check_sections(value, sections, _AUGMIX_SECTIONS, ())
    elif name in _AUTO_AUGMENT_POLICIES:
        _check_sections(value, sections, _AUTO_AUGMENT_SECTIONS, ())
    else:
        raise _problem(value, f"unknown policy {name!r} (rand-..., augmix-..., trivialaugment or an "
                              f"AutoAugment policy: {', '.join(_AUTO_AUGMENT_POLICIES)})")
    return policy


def check_policy(value: str | None) -> str | None:
    """The canonical policy for a spec field: checked, then built once by timm so that no bad string gets
    as far as a training run (timm is imported only when a policy is set)."""
    policy = normalize_policy(value)
    if policy is not None:
        try:
            create_policy(policy, (3, 32, 32), mean=[0.5] * 3, std=[0.5] * 3, interpolation="bilinear")
        except (AssertionError, ValueError, KeyError) as exc:
            raise _problem(value or "", f"timm cannot build it ({exc or type(exc).__name__})") from None
    return policy


def create_policy(
    policy: str, input_size: tuple[int, int, int], *, mean: list[float], std: list[float], interpolation: str
) -> Any:
    """The PIL -> PIL transform of POLICY (a canonical string from normalize_policy)."""
    if policy == "trivialaugment":
        from torchvision.transforms import InterpolationMode, v2

        fill = [min(255, round(255 * m)) for m in mean]  # the mean colour, as timm's policies fill
        return v2.TrivialAugmentWide(interpolation=InterpolationMode(interpolation), fill=fill)
    from timm.data import create_transform as timm_transform

    # color_jitter None: only what was asked; separate: (crop+flip, policy, to-tensor) -> the policy alone
    _, secondary, _ = timm_transform(
        input_size, is_training=True, auto_augment=policy, color_jitter=None, interpolation=interpolation,
        mean=tuple(mean), std=tuple(std), separate=True,
    )
    return secondary


def create_erasing(probability: float) -> Any:
    """timm's RandomErasing of one region of a normalized CHW tensor with PROBABILITY."""
    from timm.data.random_erasing import RandomErasing

    return RandomErasing(probability, mode=ERASING_MODE, device="cpu")


class TorchSeeded:
    """Runs TRANSFORM with Python's and NumPy's global RNGs seeded from torch's, then restores them.

    timm's policies and random erasing draw from `random` and `np.random`; the dataset seeds only torch for
    each sample (vizsla.data.dataset), so without this a batch would depend on the worker that made it and
    a resumed epoch would not replay the same images.
    """

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, image: Any) -> Any:
        import numpy as np
        import torch

        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        python_state, numpy_state = random.getstate(), np.random.get_state()
        random.seed(seed)
        np.random.seed(seed)
        try:
            return self.transform(image)
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r})"


def describe(*, augment: bool, hflip: bool, auto_augment: str | None, random_erasing: float) -> str:
    """One line for the log: what the train split gets."""
    if not augment:
        ignored = " (auto_augment and random_erasing ignored)" if auto_augment or random_erasing else ""
        return f"none (data.augment is off){ignored}"
    steps = ["random resized crop"] + (["flip"] if hflip else [])
    if auto_augment:
        steps.append(auto_augment)
    if random_erasing > 0:
        steps.append(f"random erasing {random_erasing:g}")
    return ", ".join(steps)
