"""Self-contained HTML reports: one way to render a packaged Jinja template and to embed a PNG in it.

The training, tuning and profiler reports each keep their template in their package's `templates/`
folder and build their context there; rendering is the same for all: autoescaping on (class names, file
names and hyperparameter values are user text), undefined names an error, block whitespace trimmed.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any


def render_template(package: str, name: str, context: Mapping[str, Any]) -> str:
    """Render PACKAGE's templates/NAME with CONTEXT (jinja2 is imported here, when a report is written)."""
    from jinja2 import Environment, StrictUndefined

    template = resources.files(package).joinpath("templates").joinpath(name).read_text("utf-8")
    environment = Environment(
        autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    return environment.from_string(template).render(**context)


def png_data_uri(path: Path) -> str | None:
    """The PNG file at PATH as a data: URI for an <img> (the page links nothing), None when it is missing."""
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
