"""The local web console: training jobs, tuning jobs (best trial, objective history) and endpoints.

Server-rendered HTML (Jinja through vizsla.infra.rendering, inline CSS and SVG): it opens offline and
needs no JavaScript. `vizsla console` runs it; `create_console_app` builds it for tests and embedding.
"""

from vizsla.console.app import create_console_app

__all__ = ["create_console_app"]
