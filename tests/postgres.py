"""A throwaway PostgreSQL server for the tests that need one (Debian's packages: ``scripts/install-postgres.sh``).

Started once per test session in a temporary folder on a free port (as the ``postgres`` user when the tests run
as root: the server refuses root), each test given a database of its own; skipped with the reason when no server
binaries are found or the server does not start.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import free_port

BIN_GLOBS = ("/usr/lib/postgresql/*/bin",)


def binaries() -> Path | None:
    for pattern in BIN_GLOBS:
        for folder in sorted(glob.glob(pattern), reverse=True):  # the newest version first
            if Path(folder, "initdb").is_file() and Path(folder, "pg_ctl").is_file():
                return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PostgresServer:
    """A cluster in a temporary folder: :meth:`start` (again after :meth:`stop`: same port, same data),
    :meth:`remove`. Raises RuntimeError with the reason when it cannot start."""

    def __init__(self) -> None:
        bin_dir = binaries()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl): run scripts/install-postgres.sh")
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="sanad-pg-"))
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                raise RuntimeError("running as root and no runuser to start PostgreSQL as another user")
            self.as_user = [runuser, "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
        self.data, self.port = self.root / "data", free_port()
        self.url = f"postgresql://sanad@127.0.0.1:{self.port}"
        try:
            self._run(str(bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "sanad", "-E", "UTF8",
                      "--no-sync")
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            self.remove()
            raise RuntimeError(f"PostgreSQL did not start: {exc}") from exc

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    def start(self) -> str:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                      "-t", "60", "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                      "-c max_connections=300", "start")
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"PostgreSQL did not start: {exc}") from exc
        return self.url

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def server() -> Iterator[PostgresServer]:
    """A started server, removed on exit."""
    pg = PostgresServer()
    try:
        pg.start()
        yield pg
    finally:
        pg.remove()


def new_database(base: str) -> str:
    """A fresh, empty database on the server at ``base``; its URL."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(f"{base.replace('postgresql://', 'postgresql+psycopg://')}/postgres",
                              isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return f"{base}/{name}"
