"""Several hosts for real: Linux network namespaces as hosts on a bridge of their
own (10.231.0.0/24, inside namespaces this test makes; nothing leaves the
machine) — PostgreSQL on one, ``dask scheduler`` on one, two ``dask worker``
hosts, and drivers on two more, all on one search in PostgreSQL.

Checked: no parameter set evaluated twice by two live drivers; a SIGKILLed
driver's trials taken over by the other; a driver whose clock is 120 s behind
(``faketime``); two drivers of one hostname in separate PID namespaces
(``unshare --pid``). Namespaces, servers and processes are removed however the
tests end. Skipped, saying why, where namespaces cannot be made (not root, no
``ip``); under CI (``CI=true``) they fail instead.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.postgres import PASSWORD, USER, PostgresServer, _binaries

ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).resolve().parent / "multihost_driver.py"
NET = "10.231.0"  # a private range, on a bridge inside a namespace of our own
HOSTS = {"db": 1, "scheduler": 2, "worker1": 3, "worker2": 4, "a": 5, "b": 6}
BUDGET = 170.0  # seconds for the whole module, set-up and tear-down aside
N = 60  # parameter sets in each search
SLEEP = 0.25  # seconds an evaluation lasts


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI needs network namespaces for the multi-host tests: {reason}")
    pytest.skip(f"no network namespaces can be made here: {reason}")


def _ip(*args: str) -> None:
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        msg = f"ip {' '.join(args)} failed: {done.stderr.strip()}"
        raise RuntimeError(msg)


@dataclass
class Hosts:
    """The namespaces, the servers in them and every process started there."""

    prefix: str
    workdir: Path
    made: list[str] = field(default_factory=list)  # namespaces, in order
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)  # each process's output
    postgres: PostgresServer | None = None
    url: str = ""  # the drivers' URL (TCP, on the db host)
    local_url: str = ""  # the test's (the server's Unix socket)
    deadline: float = 0.0  # time.monotonic() by which every test is done

    def left(self, what: str) -> float:
        """Seconds left of the module's budget; fail once none is left."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"the multi-host tests ran out of time ({BUDGET:g} s) {what}")
        return left

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def address(self, host: str) -> str:
        return f"{NET}.{HOSTS[host]}"

    @property
    def scheduler(self) -> str:
        return f"tcp://{self.address('scheduler')}:8786"

    def build(self) -> None:
        switch = self.ns("switch")
        _ip("netns", "add", switch)
        self.made.append(switch)
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        for host, number in HOSTS.items():
            name = self.ns(host)
            _ip("netns", "add", name)
            self.made.append(name)
            port = f"p{number}"
            _ip("-n", switch, "link", "add", port, "type", "veth", "peer", "name",
                "eth0", "netns", name)  # fmt: skip
            _ip("-n", switch, "link", "set", port, "master", "br0", "up")
            _ip("-n", name, "addr", "add", f"{NET}.{number}/24", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")
            _ip("-n", name, "link", "set", "lo", "up")

    def start(
        self, host: str, argv: list[str], log: str, prefix: tuple[str, ...] = ()
    ) -> subprocess.Popen[str]:
        """Start ``argv`` on ``host`` (after ``prefix``: faketime, unshare)."""
        env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}
        with open(self.workdir / log, "w") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(host), *prefix, *argv],
                stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
                cwd=self.workdir, start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        self.logs[proc.pid] = self.workdir / log
        return proc

    def start_postgres(self, bindir: str) -> None:
        server = self.postgres = PostgresServer(bindir)
        server.watch()
        pwfile = os.path.join(server.root, "pw")
        with open(pwfile, "w") as f:
            f.write(PASSWORD)
        entry = pwd.getpwnam(server.user) if server.user else None
        if entry is not None:
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        server._run(
            "initdb", "-D", server.data, "-U", USER, f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
        )  # fmt: skip
        with open(os.path.join(server.data, "pg_hba.conf"), "a") as f:
            f.write(f"host all all {NET}.0/24 scram-sha-256\n")
        options = (
            f"-p {server.port} -c listen_addresses={self.address('db')} "
            f"-c unix_socket_directories={server.root} -c fsync=off "
            "-c max_connections=200"
        )
        user = ("runuser", "-u", server.user, "--") if server.user else ()
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns("db"), *user,
             os.path.join(bindir, "pg_ctl"), "-D", server.data, "-o", options,
             "-l", os.path.join(server.root, "log"), "-w", "-t", "60", "start"],
            capture_output=True, text=True, timeout=120, check=False,
            cwd=server.root,
        )  # fmt: skip
        if done.returncode != 0:
            msg = f"pg_ctl start failed: {done.stderr.strip()}"
            raise RuntimeError(msg)
        import sqlalchemy as sa

        self.local_url = (
            f"postgresql+psycopg://{USER}:{PASSWORD}@/postgres"
            f"?host={server.root}&port={server.port}"
        )
        engine = sa.create_engine(self.local_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql('CREATE DATABASE "multihost"')
        engine.dispose()
        self.local_url = self.local_url.replace("/postgres?", "/multihost?")
        self.url = (
            f"postgresql+psycopg://{USER}:{PASSWORD}@{self.address('db')}:"
            f"{server.port}/multihost"
        )

    def tear_down(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        if self.postgres is not None:
            self.postgres.stop()
        for name in reversed(self.made):
            # anything still running in it (started by these tests) goes too
            pids = subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True,
                timeout=30, check=False,
            ).stdout.split()  # fmt: skip
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], capture_output=True,
                           timeout=30, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    """PostgreSQL, a scheduler and two workers, each on a host of its own."""
    if os.geteuid() != 0:
        _unavailable("network namespaces need root")
    if shutil.which("ip") is None:
        _unavailable("no `ip` command (apt-get install iproute2)")
    bindir = _binaries()
    if bindir is None:
        _unavailable("pg_ctl not found (apt-get install postgresql)")
    assert bindir is not None
    made = Hosts(f"dt{os.getpid()}", Path(tempfile.mkdtemp(prefix="dasktune-mh-")))
    try:
        try:
            made.build()
        except (RuntimeError, OSError, subprocess.SubprocessError) as err:
            _unavailable(str(err))
        made.start_postgres(bindir)
        python = sys.executable
        made.start("scheduler", [python, "-m", "distributed.cli.dask_scheduler",
                                 "--host", made.address("scheduler"), "--port",
                                 "8786", "--no-dashboard"], "scheduler.log")  # fmt: skip
        for worker in ("worker1", "worker2"):
            made.start(worker, [python, "-m", "distributed.cli.dask_worker",
                                made.scheduler, "--host", made.address(worker),
                                "--nthreads", "2", "--no-dashboard"],
                       f"{worker}.log")  # fmt: skip
        made.deadline = time.monotonic() + BUDGET
        yield made
    finally:
        made.tear_down()
        shutil.rmtree(made.workdir, ignore_errors=True)


def _driver(
    hosts: Hosts,
    host: str,
    search: str,
    tag: str,
    *,
    stale_after: float = 30.0,
    prefix: tuple[str, ...] = (),
) -> subprocess.Popen[str]:
    argv = [sys.executable, str(DRIVER), hosts.url, hosts.scheduler, search, tag,
            str(hosts.workdir / f"{search}.evaluations"), str(N), str(SLEEP),
            str(stale_after)]  # fmt: skip
    return hosts.start(host, argv, f"{search}-{tag}.log", prefix)


def _finish(hosts: Hosts, search: str, *drivers: subprocess.Popen[str]) -> None:
    for proc in drivers:
        try:
            proc.wait(timeout=hosts.left(f"waiting for the drivers of {search!r}"))
        except subprocess.TimeoutExpired:
            hosts.left(f"waiting for the drivers of {search!r}")
        assert proc.returncode == 0, hosts.logs[proc.pid].read_text()


def _evaluations(hosts: Hosts, search: str) -> list[tuple[str, int]]:
    path = hosts.workdir / f"{search}.evaluations"
    lines = path.read_text().split("\n") if path.exists() else []
    return [(tag, int(i)) for tag, i in (line.split() for line in lines if line)]


def _done(hosts: Hosts, search: str) -> set[int]:
    from dasktune.store.sql import TrialStore

    store = TrialStore(hosts.local_url, readonly=True)
    try:
        found = store.find_search(search)
        assert found is not None
        return {
            t["params"]["i"] for t in store.trials(found["id"]) if t["status"] == "done"
        }
    finally:
        store.close()


def _count(hosts: Hosts, search: str) -> tuple[int, int]:
    """Evaluations and duplicates (evaluations of a set beyond its first),
    printed for the record."""
    evaluations = _evaluations(hosts, search)
    counts = collections.Counter(i for _, i in evaluations)
    duplicates = sum(c - 1 for c in counts.values())
    print(f"{search}: {len(evaluations)} evaluations, {len(counts)} unique, "
          f"{duplicates} duplicates")  # fmt: skip
    return len(evaluations), duplicates


def _two_drivers(hosts: Hosts, search: str, **b_options) -> None:
    a = _driver(hosts, "a", search, "a")
    b = _driver(hosts, "b", search, "b", **b_options)
    _finish(hosts, search, a, b)
    _both_evaluated(hosts, search)


def _both_evaluated(hosts: Hosts, search: str) -> None:
    """Both drivers had trials evaluated: they contended for the grid."""
    assert {tag for tag, _ in _evaluations(hosts, search)} == {"a", "b"}


@pytest.mark.timeout(BUDGET + 60)
def test_two_drivers_on_two_hosts_evaluate_each_set_once(hosts):
    _two_drivers(hosts, "plain")
    assert _count(hosts, "plain") == (N, 0)
    assert _done(hosts, "plain") == set(range(N))


@pytest.mark.timeout(BUDGET + 60)
def test_a_driver_whose_clock_is_120_s_behind_takes_nothing_live(hosts):
    if shutil.which("faketime") is None:
        _unavailable("faketime is not installed (apt-get install faketime)")
    check = subprocess.run(
        ["faketime", "-f", "-120s", sys.executable, "-c",
         "import time; print(time.time())"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert float(check.stdout) < time.time() - 100  # Python's clock is fooled
    _two_drivers(hosts, "skewed", prefix=("faketime", "-f", "-120s"))
    assert _count(hosts, "skewed") == (N, 0)
    assert _done(hosts, "skewed") == set(range(N))


def _in_pid_namespace(forks: int) -> tuple[str, ...]:
    # the driver's pid in its namespace (its own /proc, as in a container): 2
    # after no forks, about 2 + forks after some (above every thread id of the
    # other driver's namespace, so that it names no process there)
    return ("unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
            f'i=0; while [ $i -lt {forks} ]; do /bin/true; i=$((i+1)); done; "$@"; '
            "exit $?", "sh")  # fmt: skip


@pytest.mark.timeout(BUDGET + 60)
def test_two_drivers_of_one_hostname_in_two_pid_namespaces(hosts):
    # both on one host (one hostname, one network): separate PID namespaces
    search = "pidns"
    argv = lambda tag: [  # noqa: E731
        sys.executable, str(DRIVER), hosts.url, hosts.scheduler, search, tag,
        str(hosts.workdir / f"{search}.evaluations"), str(N), str(SLEEP), "30",
    ]  # fmt: skip
    a = hosts.start("a", argv("a"), f"{search}-a.log", _in_pid_namespace(0))
    b = hosts.start("a", argv("b"), f"{search}-b.log", _in_pid_namespace(400))
    _finish(hosts, search, a, b)
    _both_evaluated(hosts, search)
    assert _count(hosts, search) == (N, 0)
    assert _done(hosts, search) == set(range(N))


@pytest.mark.timeout(BUDGET + 60)
def test_a_killed_drivers_trials_are_taken_over_by_the_other(hosts):
    search = "killed"
    killed = _driver(hosts, "a", search, "a", stale_after=3.0)
    survivor = _driver(hosts, "b", search, "b", stale_after=3.0)
    while sum(tag == "a" for tag, _ in _evaluations(hosts, search)) < 5:
        hosts.left("waiting for the first driver's evaluations")
        assert killed.poll() is None and survivor.poll() is None
        time.sleep(0.1)
    # read before the kill: the survivor takes a dead driver's claims over at
    # once (same boot and PID namespace), so a set read after it may already
    # hold a trial the killed driver had evaluated but not recorded
    done_before = _done(hosts, search)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    _finish(hosts, search, survivor)
    assert _done(hosts, search) == set(range(N))
    evaluations = _evaluations(hosts, search)
    _count(hosts, search)
    # the survivor evaluated each set once, and nothing done before again
    theirs = collections.Counter(i for tag, i in evaluations if tag == "b")
    assert set(theirs.values()) == {1}
    both = collections.Counter(i for _, i in evaluations)
    assert all(both[i] == 1 for i in done_before)
