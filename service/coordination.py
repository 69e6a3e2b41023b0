"""What several service processes must agree on, kept in the shared database: the rate limit's buckets and the
lease that names the one process running the background jobs (feed polling, the dense fill, retention).

Times come from the database's clock, so processes on machines whose clocks differ still agree on when a bucket
refills and when a lease runs out.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.database import Database, DatabaseUnavailable, StateTables, upsert
from service.security import Limiter

log = logging.getLogger("sanad.service")
JOBS = "jobs"  # the lease of the background jobs (feeds, dense fill, retention)

metadata = sa.MetaData()
rate_limits = sa.Table(
    "rate_limits", metadata,
    sa.Column("client", sa.Text, primary_key=True),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("stamp", sa.Float, nullable=False),  # seconds since the epoch, the database's clock
    sa.Index("rate_limits_stamp", "stamp"),
)
leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),  # seconds since the epoch, the database's clock
)
MIGRATIONS = [lambda conn: metadata.create_all(conn, checkfirst=True)]


def _clock(conn: Connection) -> float:
    """The database's time, in seconds since the epoch."""
    if conn.dialect.name == "postgresql":
        expr: Any = sa.func.extract("epoch", sa.func.clock_timestamp())
    else:
        expr = (sa.func.julianday("now") - 2440587.5) * 86400.0
    return float(conn.execute(sa.select(expr)).scalar_one())


def process_name() -> str:
    """This process, as a lease holder is named: host, pid and a random part (a pid is reused after a restart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Coordination(StateTables):
    component, db_name, migrations = "service", "service", MIGRATIONS

    @classmethod
    def open(cls, data_dir: Path, url: str | None = None) -> Coordination:
        return cls(Database(url, data_dir), owns=True)

    # -- the rate limit ----------------------------------------------------------------------------
    def take(self, client: str, capacity: float, rate: float) -> float:
        """Spend one of ``client``'s tokens (a bucket of ``capacity``, refilled at ``rate`` per second, shared by
        every process); 0 if allowed, else the seconds until one is available."""
        with self._write() as c:
            now = _clock(c)
            c.execute(upsert(self.engine, rate_limits, {"client": client, "tokens": capacity, "stamp": now},
                             ["client"], []))
            # Locked until commit (PostgreSQL), so two processes spend the same bucket one after the other.
            row = c.execute(sa.select(rate_limits.c.tokens, rate_limits.c.stamp)
                            .where(rate_limits.c.client == client).with_for_update()).one()
            tokens = min(capacity, row.tokens + max(now - row.stamp, 0.0) * rate)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate
            if wait == 0.0:
                tokens -= 1.0
            c.execute(rate_limits.update().where(rate_limits.c.client == client).values(tokens=tokens, stamp=now))
        return wait

    def forget_full_buckets(self, capacity: float, rate: float) -> int:
        """Delete buckets that have refilled (their clients lose nothing); the jobs' holder runs it."""
        with self._write() as c:
            full_since = _clock(c) - capacity / rate
            return int(c.execute(rate_limits.delete().where(rate_limits.c.stamp < full_since)).rowcount)

    # -- the jobs' lease ---------------------------------------------------------------------------
    def acquire(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease ``name`` for ``ttl`` seconds; False while another holder's is still running."""
        with self._write() as c:
            now = _clock(c)
            got = c.execute(upsert(self.engine, leases, {"name": name, "holder": holder, "expires_at": now + ttl},
                                   ["name"], ["holder", "expires_at"],
                                   where=sa.or_(leases.c.holder == holder, leases.c.expires_at < now))
                            .returning(leases.c.holder)).first()
        return got is not None

    def release(self, name: str, holder: str) -> None:
        with self._write() as c:
            c.execute(leases.delete().where(leases.c.name == name, leases.c.holder == holder))

    def holder(self, name: str) -> str | None:
        """Who holds the lease now (None: nobody, or it ran out)."""
        with self._read() as c:
            now = _clock(c)
            return c.execute(sa.select(leases.c.holder)
                             .where(leases.c.name == name, leases.c.expires_at >= now)).scalar()


class SharedRateLimiter(Limiter):
    """The rate limit counted in the shared database, so that N processes allow what one does. A database that
    cannot be reached lets requests through (logged once per outage): answering matters more than limiting."""

    blocking = True  # a database round trip: the middleware calls it in a worker thread

    def __init__(self, database: Database, per_minute: int) -> None:
        super().__init__(per_minute)
        self.database = database
        self._coordination: Coordination | None = None
        self._lock = threading.Lock()
        self._down = threading.Event()

    @property
    def coordination(self) -> Coordination:
        with self._lock:  # opened at the first request, not when the app is built
            if self._coordination is None:
                self._coordination = Coordination(self.database)
            return self._coordination

    def take(self, client: str) -> float:
        if not self.enabled:
            return 0.0
        try:
            wait = self.coordination.take(client, self.capacity, self.rate)
        except DatabaseUnavailable as exc:
            if not self._down.is_set():
                self._down.set()
                log.error("Rate limit not counted while the database is unreachable: %s", exc)
            return 0.0
        self._down.clear()
        return wait
