"""A throwaway PostgreSQL cluster from Debian's packages, for the audit-store tests.

Nothing is installed here: the binaries come from ``apt-get install -y postgresql``
(``scripts/system-deps.sh``). The cluster lives in a temporary directory, listens on a free loopback
port and a private unix socket, runs without fsync, and is removed afterwards. As root, the server runs
as the ``postgres`` user (``runuser``), since PostgreSQL refuses to run as root.

Run it by hand to get a DSN for experiments: ``.venv/bin/python tests/audit/postgres_cluster.py``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL is not installed, and the audit-store tests run against a real one: install Debian's package with "
    "`apt-get update && apt-get install -y postgresql` (or `bash scripts/system-deps.sh`), "
    "or point ML_CONNECTOR_TEST_PG_DSN at a server"
)
DATABASE = "ml_connector_test"


class PostgresNotInstalled(RuntimeError):
    pass


def find_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb`` (override: ML_CONNECTOR_PG_BIN)."""
    override = os.environ.get("ML_CONNECTOR_PG_BIN")
    candidates = [override] if override else glob.glob("/usr/lib/postgresql/*/bin")
    usable = [Path(c) for c in candidates if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists()]
    if not usable:
        raise PostgresNotInstalled(INSTALL_HINT)

    def version(path: Path) -> tuple[int, ...]:
        try:
            return tuple(int(p) for p in path.parent.name.split("."))
        except ValueError:
            return (0,)

    return max(usable, key=version)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    def __init__(self) -> None:
        self.bin_dir = find_bin_dir()
        self.base = Path(tempfile.mkdtemp(prefix="mlc-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, cwd=self.base, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            log = (self.base / "server.log").read_text() if (self.base / "server.log").exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{log}"
            )

    def start(self) -> str:
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.base}",
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=40",
                "-c shared_buffers=64MB",
            ]
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.base / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", DATABASE)
        return self.dsn

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def running_cluster() -> Iterator[str]:
    """Yield the DSN of a fresh cluster (or of ML_CONNECTOR_TEST_PG_DSN when set); tear it down after."""
    external = os.environ.get("ML_CONNECTOR_TEST_PG_DSN")
    if external:
        yield external
        return
    cluster = PostgresCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


if __name__ == "__main__":  # pragma: no cover - manual use
    import time

    with running_cluster() as dsn:
        print(dsn, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
