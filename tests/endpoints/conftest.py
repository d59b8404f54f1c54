"""Endpoints outlive the process that created them: whatever a test leaves registered is deleted after it,
so a failed assertion never leaves a supervisor and its servers running."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _delete_leftover_endpoints(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("COLUMNS", "200")  # rich tables wide enough for whole URLs and statuses
    yield
    from vizsla.endpoints import delete_endpoint, iter_records

    for record in list(iter_records()):
        delete_endpoint(str(record["name"]))
