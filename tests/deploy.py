"""Separately started ``dask scheduler`` / ``dask worker`` processes, as a user
starts them, optionally with TLS certificates from ``Security.temporary()``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from distributed import Client
from distributed.security import Security

DASK = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_certificates(directory: Path) -> dict[str, str]:
    """A self-signed certificate and its key as files: the ``--tls-*`` options."""
    sec = Security.temporary()
    cert, key = directory / "cert.pem", directory / "key.pem"
    cert.write_text(sec.tls_scheduler_cert)
    key.write_text(sec.tls_scheduler_key)
    return {"--tls-ca-file": str(cert), "--tls-cert": str(cert), "--tls-key": str(key)}


@contextmanager
def dask_processes(
    workdir: Path, *, tls: dict[str, str] | None = None, workers: int = 1
) -> Iterator[str]:
    """Start a scheduler and ``workers`` workers in ``workdir``; yield the address."""
    protocol = "tls" if tls else "tcp"
    address = f"{protocol}://127.0.0.1:{free_port()}"
    flags = [item for pair in (tls or {}).items() for item in pair]
    env = {**os.environ, "PYTHONPATH": ""}  # the workers see no test directory
    procs = [
        subprocess.Popen(
            [*DASK, "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
             "--protocol", protocol, "--dashboard-address", ":0", *flags],
            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    try:
        procs += [
            subprocess.Popen(
                [*WORKER, address, "--nthreads", "1", "--no-dashboard",
                 "--host", "127.0.0.1", *flags],
                cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]  # fmt: skip
        security = (
            Security(
                tls_ca_file=tls["--tls-ca-file"],
                tls_client_cert=tls["--tls-cert"],
                tls_client_key=tls["--tls-key"],
                require_encryption=True,
            )
            if tls
            else None
        )
        deadline = time.monotonic() + 60
        while True:  # the scheduler's port opens when it is ready
            try:
                with Client(address, security=security, timeout=5) as client:
                    if workers:
                        client.wait_for_workers(workers, timeout=60)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
