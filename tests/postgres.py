"""A real PostgreSQL server for the tests, started in a temporary directory.

The server is Debian's ``postgresql`` package (``.ci/run`` installs it when it is
missing): ``initdb`` makes a cluster in a temporary directory, ``pg_ctl`` starts it
on 127.0.0.1 at a free port with password authentication, and every test that asks
for ``postgres_url`` gets a new empty database on it. Run as root (CI is), the
server runs as the ``postgres`` system user, since PostgreSQL refuses root.

Outside CI the tests that need it skip, saying why, when no server can be
started; under CI (``CI=true``) they fail instead, so a missing server is never
a green run that tested nothing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator

import pytest

USER = "dasktune"
PASSWORD = "s3cret-pw"


def _binaries() -> str | None:
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(found)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(candidates[-1]) if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A PostgreSQL server of its own in a temporary directory."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.root = tempfile.mkdtemp(prefix="dasktune-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = _free_port()
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [os.path.join(self.bindir, args[0]), *args[1:]],
            capture_output=True,
            text=True,
            user=self.user,
            cwd=self.root,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            msg = f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}"
            raise RuntimeError(msg)

    def start(self) -> None:
        pwfile = os.path.join(self.root, "pw")
        with open(pwfile, "w") as f:
            f.write(PASSWORD)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb", "-D", self.data, "-U", USER, f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
        )  # fmt: skip
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.root} -c fsync=off "
            "-c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", self.data, "-o", options, "-l",
            os.path.join(self.root, "log"), "-w", "-t", "60", "start",
        )  # fmt: skip

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return (
            f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{self.port}/{database}"
        )

    def create_database(self) -> str:
        import sqlalchemy as sa

        name = f"t_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        return self.url(name)

    def watch(self) -> None:
        """Stop the server however this process ends: a watchdog process reads
        a pipe that only this process writes to; at its end of file (this
        process stopped, or was killed with SIGTERM or SIGKILL before any
        teardown ran) it stops the server and removes its directory."""
        command = [os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m",
                   "immediate", "stop"]  # fmt: skip
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, repr(command), self.user or "",
             self.root],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None:
            watchdog.stdin.close()  # its end of file: the server is already gone
            watchdog.wait(timeout=60)


# the watchdog (its own session: a SIGTERM or Ctrl-C to the tests' process
# group does not reach it): waits for the end of its stdin, then stops the server
_WATCHDOG = """
import ast, shutil, subprocess, sys
sys.stdin.buffer.read()
command, user, root = ast.literal_eval(sys.argv[1]), sys.argv[2] or None, sys.argv[3]
subprocess.run(command, user=user, cwd="/", capture_output=True, timeout=120)
shutil.rmtree(root, ignore_errors=True)
"""


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI needs a PostgreSQL server for these tests: {reason}")
    pytest.skip(f"no PostgreSQL server can be started here: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (skips, or fails under CI, if none)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("the psycopg driver is not installed (pip install psycopg)")
    bindir = _binaries()
    if bindir is None:
        _unavailable("pg_ctl not found (apt-get install postgresql)")
    assert bindir is not None
    server = PostgresServer(bindir)
    try:
        server.watch()  # first: a kill during initdb or the start stops it too
        server.start()
    except (RuntimeError, OSError, KeyError, subprocess.SubprocessError) as err:
        server.stop()
        _unavailable(str(err))
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database on the session's server."""
    return postgres_server.create_database()
