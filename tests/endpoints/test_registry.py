"""The registry: names SageMaker accepts, one live endpoint per name, and a record whose supervisor is gone
shown as Failed (a killed supervisor or a restarted machine never leaves a phantom InService)."""

from __future__ import annotations

import os

import pytest

from vizsla.endpoints import iter_records, read_record
from vizsla.endpoints.registry import check_name, update_record, write_new_record
from vizsla.errors import UserError


def test_names_follow_sagemakers_pattern() -> None:
    assert check_name("shop-2") == "shop-2"
    for bad in ("-shop", "shop--", "sh_op", "a" * 64, "../etc"):
        with pytest.raises(UserError, match="invalid endpoint name"):
            check_name(bad)
    with pytest.raises(UserError, match="no endpoint named 'ghost'"):
        read_record("ghost")


def test_a_record_whose_supervisor_is_gone_is_shown_failed() -> None:
    write_new_record("orphan", {"name": "orphan", "status": "InService", "url": "http://127.0.0.1:1"})
    update_record("orphan", supervisor_pid=os.getpid())  # a live process, but not a supervisor
    (shown,) = [r for r in iter_records() if r["name"] == "orphan"]
    assert shown["status"] == "Failed" and "supervisor is not running" in shown["failure_reason"]
    assert read_record("orphan")["status"] == "InService"  # the record itself is left as written
    write_new_record("orphan", {"name": "orphan", "status": "Creating"})  # a dead one may be replaced
    assert read_record("orphan")["status"] == "Creating"
