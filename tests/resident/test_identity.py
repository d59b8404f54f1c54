"""Which commands a resident worker may run, and which worker matches a process (vizsla.resident.identity)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vizsla.resident import identity


@pytest.fixture
def resident_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv(identity.SWITCH, "1")
    for name in identity.DISTRIBUTED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "runtime"
    monkeypatch.setenv(identity.RUNTIME_DIR, str(folder))
    return folder


def test_train_runs_in_a_worker_and_other_commands_do_not(resident_on: Path) -> None:
    assert identity.eligible(["train", "--data", "d"])
    assert not identity.eligible(["serve", "job"])
    assert not identity.eligible(["tune", "--data", "d"])
    assert not identity.eligible([])
    assert not identity.eligible(["train", "--help"])
    assert not identity.eligible(["train", "--nproc-per-node", "2"])


@pytest.mark.parametrize("value", ["0", "off", "False", "no"])
def test_the_switch_turns_it_off(resident_on: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(identity.SWITCH, value)
    assert not identity.eligible(["train"])


def test_a_process_of_a_distributed_job_stays_a_plain_process(
    resident_on: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not identity.eligible(["train"])


def test_another_environment_means_another_worker(resident_on: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = identity.socket_path()
    other = "3" if os.environ.get("OMP_NUM_THREADS") != "3" else "5"
    monkeypatch.setenv("OMP_NUM_THREADS", other)  # read once, when torch loads: a worker cannot change it
    second = identity.socket_path()
    monkeypatch.setenv("PWD", "/somewhere/else")  # a shell's bookkeeping changes no import
    assert first is not None and second is not None
    assert first != second
    assert identity.socket_path() == second
    assert first.parent == resident_on


def test_a_changed_source_file_means_another_worker(resident_on: Path) -> None:
    before = identity.identity()
    source = Path(identity.__file__)
    info = source.stat()
    try:
        os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))
        assert identity.identity() != before
    finally:
        os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert identity.identity() == before


def test_a_folder_others_can_write_to_is_not_used(resident_on: Path) -> None:
    resident_on.mkdir(mode=0o700)
    assert identity.runtime_dir() == resident_on
    resident_on.chmod(0o777)
    assert identity.runtime_dir() is None
    assert identity.socket_path() is None


def test_another_umask_means_another_worker(resident_on: Path) -> None:
    before = identity.identity()
    previous = os.umask(0o077)
    try:
        assert identity.identity() != before  # the worker's children create files with the worker's umask
    finally:
        os.umask(previous)
    assert identity.identity() == before


def test_other_interpreter_flags_mean_another_worker(
    resident_on: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    before = identity.identity()
    monkeypatch.setattr(sys, "warnoptions", ["error::DeprecationWarning"])  # python -W error::...
    assert identity.identity() != before
