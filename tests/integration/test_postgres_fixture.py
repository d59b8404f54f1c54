"""A real PostgreSQL server from the fixture: reachable, and two processes share one Optuna study on it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from vizsla.testing import postgres

pytestmark = pytest.mark.integration

needs_server = pytest.mark.skipif(
    postgres.find_pg_bin() is None, reason="no PostgreSQL server binaries (apt-get install postgresql)"
)

# One Optuna worker: waits until every worker has imported optuna (so create_study and the trials really
# race), then runs 5 trials that each record the worker's pid.
WORKER = """
import os, sys, time
from pathlib import Path
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, name, ready_dir, n_workers = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
(ready_dir / str(os.getpid())).touch()
deadline = time.monotonic() + 30
while len(list(ready_dir.iterdir())) < n_workers and time.monotonic() < deadline:
    time.sleep(0.01)

def objective(trial):
    trial.set_user_attr("pid", os.getpid())
    time.sleep(0.05)
    return trial.suggest_float("x", -1.0, 1.0) ** 2

study = optuna.create_study(study_name=name, storage=url, load_if_exists=True)
study.optimize(objective, n_trials=5)
"""


def test_server_accepts_connections(postgres_url: str) -> None:
    import sqlalchemy

    assert postgres_url.startswith("postgresql+psycopg2://vizsla@127.0.0.1:")
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.connect() as connection:
        database = connection.execute(sqlalchemy.text("select current_database()")).scalar()
        connection.execute(sqlalchemy.text("create temporary table t (x int)"))
        connection.execute(sqlalchemy.text("insert into t values (41), (1)"))
        total = connection.execute(sqlalchemy.text("select sum(x) from t")).scalar()
    engine.dispose()
    assert (database, total) == ("vizsla_test", 42)


def test_two_processes_split_one_study(postgres_url: str, tmp_path: Path) -> None:
    import optuna

    url = postgres.create_database(postgres_url, f"split_{uuid.uuid4().hex[:8]}")
    # Optuna's first-time schema creation is check-then-create (CREATE TYPE studydirection ...), so two
    # processes creating the tables of an empty database at once fail about half the time with a
    # UniqueViolation: the tables must exist before the workers start, as the tuning job ensures.
    optuna.storages.RDBStorage(url).engine.dispose()
    name = "s"
    ready = tmp_path / "ready"
    ready.mkdir()
    args = [sys.executable, "-c", WORKER, url, name, str(ready), "2"]
    workers = [subprocess.Popen(args, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [worker.communicate(timeout=60)[1] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], errors

    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 10
    assert sorted(t.number for t in trials) == list(range(10))
    pids = [t.user_attrs["pid"] for t in trials]
    assert sorted({pid: pids.count(pid) for pid in pids}.values()) == [5, 5]
    assert set(pids) == {worker.pid for worker in workers}


@needs_server
def test_server_stops_on_error_and_leaves_nothing(tmp_path: Path) -> None:
    pytest.importorskip("psycopg2")
    import psycopg2

    with pytest.raises(ValueError, match="body failed"), postgres.temporary_postgres(tmp_path) as url:
        port = int(url.split(":")[-1].split("/")[0])
        psycopg2.connect(host="127.0.0.1", port=port, user="vizsla", dbname="vizsla_test").close()
        raise ValueError("body failed")
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(host="127.0.0.1", port=port, user="vizsla", dbname="vizsla_test", connect_timeout=2)


@needs_server
def test_startup_failure_raises_with_server_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(postgres, "free_port", lambda: taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="pg_ctl start") as error:
            with postgres.temporary_postgres(tmp_path):
                pytest.fail("the server must not start on a taken port")
    assert "could not bind" in str(error.value)
