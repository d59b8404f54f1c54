"""A throw-away PostgreSQL server from Debian's binaries, so tests can share a real RDB between processes.

`temporary_postgres(base_dir)` runs initdb + pg_ctl in a fresh cluster and yields a SQLAlchemy URL; the
server stops (and a root-owned temporary cluster is removed) on exit, even when the body raises. PostgreSQL
refuses to run as root, so under root the server commands run as the `postgres` system user under /tmp.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

USER = "vizsla"
DATABASE = "vizsla_test"
SERVER_USER = "postgres"  # the system user that Debian's postgresql package creates
_TOOLS = ("initdb", "pg_ctl", "postgres")
_SOCKET_DIR_MAX = 80  # unix socket paths are limited to 107 bytes; ".s.PGSQL.NNNNN" takes the rest
_START_TRIES = 3  # a free port can be taken between probing and binding; try a fresh one


def find_pg_bin() -> Path | None:
    """Directory with initdb, pg_ctl and postgres: Debian's highest /usr/lib/postgresql/N/bin, else PATH."""

    def complete(path: Path) -> bool:
        return all(os.access(path / tool, os.X_OK) for tool in _TOOLS)

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)

    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for path in debian:
        if complete(path):
            return path
    found = shutil.which("initdb")
    if found:
        path = Path(found).resolve().parent
        if complete(path):
            return path
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(log: Path, lines: int = 30) -> str:
    """Last lines of the server log, for error messages."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no server log at {log})"


class _Cluster:
    """One cluster directory and how to run the server's commands in it (as root: via the postgres user)."""

    def __init__(self, root: Path, bin_dir: Path, as_user: str | None) -> None:
        self.root = root
        self.bin_dir = bin_dir
        self.as_user = as_user
        self.data = root / "data"
        self.log = root / "server.log"
        self.sockets = root / "sock"
        if len(str(self.sockets)) > _SOCKET_DIR_MAX:
            self.sockets = Path(tempfile.mkdtemp(prefix="vizsla-pgsock-", dir="/tmp"))
        self.sockets.mkdir(exist_ok=True)
        if as_user is not None:
            account = pwd.getpwnam(as_user)
            os.chown(self.sockets, account.pw_uid, account.pw_gid)

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool; the cluster dir is the cwd because the postgres user cannot enter /root."""
        cmd = [str(self.bin_dir / tool), *args]
        if self.as_user is not None:
            if shutil.which("runuser"):
                cmd = ["runuser", "-u", self.as_user, "--", *cmd]
            else:
                cmd = ["su", self.as_user, "-s", "/bin/sh", "-c", shlex.join(cmd)]
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        return subprocess.run(
            cmd, cwd=self.root, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
        )

    def check(self, what: str, proc: subprocess.CompletedProcess[str]) -> None:
        """Raise RuntimeError naming the step, the command's output and the server log's tail."""
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()
            raise RuntimeError(
                f"temporary PostgreSQL: {what} failed (exit {proc.returncode}) in {self.root}:\n{output}\n"
                f"--- server log {self.log} (tail) ---\n{_log_tail(self.log)}"
            )


def _prepare_root(base_dir: Path) -> tuple[Path, str | None, bool]:
    """Where the cluster lives, which user runs the server, and whether we must delete the dir afterwards."""
    base_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return Path(tempfile.mkdtemp(prefix="postgres-", dir=base_dir)), None, False
    try:
        account = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise RuntimeError(
            f"temporary PostgreSQL: running as root, and PostgreSQL refuses to run as root, but there is no "
            f"'{SERVER_USER}' system user to run it as; install Debian's postgresql package "
            f"(apt-get install postgresql) or run the tests as an ordinary user"
        ) from None
    # pytest's tmp dirs (/tmp/pytest-of-root) are 0700, closed to the postgres user: use a fresh dir in /tmp.
    root = Path(tempfile.mkdtemp(prefix="vizsla-pg-", dir="/tmp"))
    root.chmod(0o755)
    os.chown(root, account.pw_uid, account.pw_gid)
    return root, SERVER_USER, True


def _start(cluster: _Cluster) -> int:
    """Start the server on a free port (a fresh one if the port was taken meanwhile); return the port."""
    for attempt in range(_START_TRIES):
        port = free_port()
        options = f"-p {port} -k {cluster.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = ["-D", str(cluster.data), "-l", str(cluster.log), "-w", "-t", "60", "-o", options, "start"]
        proc = cluster.run("pg_ctl", *start)
        if proc.returncode == 0:
            return port
        # A start that timed out may have left a postmaster behind; never leak one.
        cluster.run("pg_ctl", "-D", str(cluster.data), "-m", "immediate", "-w", "stop")
        if attempt + 1 == _START_TRIES or "could not bind" not in _log_tail(cluster.log):
            cluster.check(f"pg_ctl start on port {port}", proc)
    raise AssertionError("unreachable")


def _stop(cluster: _Cluster) -> None:
    """Fast shutdown (disconnects clients); fall back to immediate so no server outlives the tests."""
    proc = cluster.run("pg_ctl", "-D", str(cluster.data), "-m", "fast", "-w", "-t", "30", "stop")
    if proc.returncode != 0:
        proc = cluster.run("pg_ctl", "-D", str(cluster.data), "-m", "immediate", "-w", "stop")
        cluster.check("pg_ctl stop", proc)


def _keep_log(log: Path, base_dir: Path) -> None:
    """Copy the server log of a cluster that is about to be deleted into base_dir, for post-mortems."""
    with contextlib.suppress(OSError):
        shutil.copyfile(log, base_dir / "postgres-server.log")


def create_database(url: str, name: str) -> str:
    """Create database `name` on the server of `url` and return its URL: one clean database per test."""
    import psycopg2
    import sqlalchemy

    server = sqlalchemy.engine.make_url(url)
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"database name {name!r}: use lower-case letters, digits and underscores")
    connection = psycopg2.connect(
        host=server.host, port=server.port, user=server.username, dbname=server.database
    )
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
    finally:
        connection.close()
    return server.set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def temporary_postgres(base_dir: Path) -> Iterator[str]:
    """Start a throw-away PostgreSQL server with database `vizsla_test`; yield its SQLAlchemy URL; stop it."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise RuntimeError(
            "temporary PostgreSQL: no server binaries (initdb, pg_ctl, postgres) in "
            "/usr/lib/postgresql/*/bin or on PATH; install them with `apt-get install postgresql`"
        )
    base_dir = Path(base_dir)
    root, as_user, remove_root = _prepare_root(base_dir)
    cluster = _Cluster(root, bin_dir, as_user)
    started = False
    try:
        initdb = ["-D", str(cluster.data), "-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8", "--locale=C"]
        cluster.check("initdb", cluster.run("initdb", *initdb))
        port = _start(cluster)
        started = True
        createdb = ["-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE]
        cluster.check("createdb", cluster.run("createdb", *createdb))
        yield f"postgresql+psycopg2://{USER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        try:
            if started:
                _stop(cluster)
        finally:
            if remove_root:
                _keep_log(cluster.log, base_dir)
                shutil.rmtree(root, ignore_errors=True)
            if not cluster.sockets.is_relative_to(root):
                shutil.rmtree(cluster.sockets, ignore_errors=True)
