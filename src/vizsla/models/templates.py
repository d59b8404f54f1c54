"""A backbone built ahead by a process that forks jobs (a tuning worker's fork server), taken by a job.

Building a backbone means timm's random initialisation, reading the weights file and loading it (~0.2-0.3 s
for efficientnet_lite0 in a fresh process, most of it faulting in new memory). A forked job can instead take
the one its server built: its tensors are the server's pages, shared copy-on-write, so taking it costs
nothing and a job that trains the backbone gets its own pages as it writes them. A job seeds its random
generators right before it builds its model, and the head's initial weights come from the generators as the
backbone leaves them, so the template is kept with the generator states before and after it was built: a
build of the same backbone from the same states takes the template and sets the generators to the states the
build would have left. A process takes a template once (a second build in it gets a model of its own); any
other build is a build. Nothing is kept unless `keep_backbone` is called.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from vizsla.models.weights import WeightsSource


@dataclass(frozen=True)
class _Template:
    backbone: nn.Module
    preprocessing: dict[str, Any]
    states_after: tuple[Any, Any, Any]  # Python, NumPy and torch generator states the build left


_TEMPLATES: dict[str, _Template] = {}


def template_key(
    name: str, source: WeightsSource, image_size: int | None, kwargs: dict[str, Any]
) -> str | None:
    """The key of a backbone built now from the current generator states; None when none is kept."""
    if not _TEMPLATES:
        return None
    return _key(name, source, image_size, kwargs)


def _key(name: str, source: WeightsSource, image_size: int | None, kwargs: dict[str, Any]) -> str:
    import numpy as np
    import torch

    hasher = hashlib.sha256()
    what = [name, source.provenance(), image_size, sorted(kwargs.items())]
    hasher.update(json.dumps(what, sort_keys=True, default=str).encode("utf-8"))
    hasher.update(repr(random.getstate()).encode("ascii"))
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    hasher.update(f"{kind}|{pos}|{has_gauss}|{cached!r}|".encode("ascii") + keys.tobytes())
    hasher.update(torch.get_rng_state().numpy().tobytes())
    return hasher.hexdigest()


def take(key: str | None) -> tuple[nn.Module, dict[str, Any]] | None:
    """The template kept under KEY (removed: it is this process's model now), with the generators as its
    build left them; None when there is none."""
    template = _TEMPLATES.pop(key, None) if key is not None else None
    if template is None:
        return None
    import numpy as np
    import torch

    python_state, numpy_state, torch_state = template.states_after
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    torch.set_rng_state(torch_state)
    return template.backbone, template.preprocessing


def keep_backbone(name: str, weights: str = "auto", *, image_size: int | None = None) -> None:
    """Build backbone NAME from the current generator states and keep it as a template (see the module)."""
    import numpy as np
    import torch

    from vizsla.models.registry import build_backbone, resolve_build

    source, kwargs = resolve_build(name, weights, image_size)
    key = _key(name, source, image_size, kwargs)
    backbone, preprocessing = build_backbone(name, source, image_size, kwargs)
    after = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    _TEMPLATES[key] = _Template(backbone, preprocessing, after)


def forget_backbones() -> None:
    _TEMPLATES.clear()
