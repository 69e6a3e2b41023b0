"""Where the service keeps its own state: conversations, the Slack bot's answers, ratings and retries, rate-limit
counters and who runs the background jobs.

``database.url`` unset (the embedded default): SQLite files under the data folder, one per concern as before
(``conversations.sqlite3``, ``feedback.sqlite3``, ``service.sqlite3``). ``postgresql://…``: one PostgreSQL database
for all of it, so several service processes behind a load balancer share conversations, retries, limits and jobs.

SQLAlchemy Core, not an ORM and not SQL written twice: the same table definitions and statements run on both, the
upserts through each dialect's ``insert().on_conflict_*`` (the one place they differ), its pool hands connections
to worker threads and replaces dead ones (``pool_pre_ping``: a database that went away is used again without a
restart), and it is installed already (llama-index-core depends on it). psycopg 3 is the PostgreSQL driver (the
``postgres`` extra).

Migrations run at start-up, one versioned list per component, in one transaction that first takes a PostgreSQL
advisory lock (SQLite: ``BEGIN IMMEDIATE``), so processes starting together apply each step once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url

log = logging.getLogger("sanad.service")

MIGRATION_LOCK = 0x53414E4144  # pg_advisory_xact_lock key ("SANAD"): one migrating process at a time

_versions = sa.Table(
    "sanad_schema", sa.MetaData(),
    sa.Column("component", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

Migration = Callable[[Connection], None]


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached (or answered with an error): state is not stored or read this time."""


def unavailable(exc: Exception) -> DatabaseUnavailable:
    """A driver error as the service reports it: what failed, never the password."""
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return DatabaseUnavailable(f"database unavailable: {first[0] if first else type(exc).__name__}")


def _postgres_url(url: str) -> URL:
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"database.url must be a postgresql:// URL, not {parsed.get_backend_name()}://")
    return parsed.set(drivername="postgresql+psycopg")


def _sqlite_engine(path: Path) -> Engine:
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 10})

    # SQLAlchemy's documented recipe for SQLite transactions: the driver's own (deferred, implicit) BEGIN is off,
    # and a write takes the file's write lock when it starts (BEGIN IMMEDIATE), so two writers never deadlock
    # upgrading read locks; reads stay concurrent under WAL.
    @event.listens_for(engine, "connect")
    def _connect(dbapi: Any, _: Any) -> None:
        dbapi.isolation_level = None
        cur = dbapi.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


class Database:
    """The engines of one service process, built from its settings: one SQLite file per name, or one PostgreSQL
    database for every name."""

    def __init__(self, url: str | None, data_dir: Path) -> None:
        self.url = _postgres_url(url) if url else None
        self.data_dir = data_dir
        self._engines: dict[str, Engine] = {}
        self._migrated: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return "postgresql" if self.url is not None else "sqlite"

    @property
    def shared(self) -> bool:
        """True when other processes may use the same state (PostgreSQL)."""
        return self.url is not None

    def describe(self) -> dict[str, Any]:
        """For ``/readyz``: which database, the password never shown."""
        if self.url is None:
            return {"kind": "sqlite", "path": str(self.data_dir)}
        return {"kind": "postgresql", "url": self.url.set(drivername="postgresql").render_as_string(hide_password=True)}

    def engine(self, name: str) -> Engine:
        """The engine holding ``name``'s tables (``name`` is the SQLite file's stem)."""
        with self._lock:
            key = "postgresql" if self.url is not None else name
            engine = self._engines.get(key)
            if engine is None:
                if self.url is not None:
                    engine = sa.create_engine(self.url, pool_pre_ping=True, pool_size=8, max_overflow=8,
                                              pool_timeout=10, connect_args={"connect_timeout": 5})
                else:
                    engine = _sqlite_engine(self.data_dir / f"{name}.sqlite3")
                self._engines[key] = engine
            return engine

    def migrate(self, engine: Engine, component: str, steps: list[Migration]) -> None:
        """Apply ``component``'s steps not yet applied, in order, under the migration lock."""
        key = (str(engine.url), component)
        if key in self._migrated:
            return
        with write(engine) as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            _versions.create(conn, checkfirst=True)
            done = conn.execute(sa.select(_versions.c.version).where(_versions.c.component == component)).scalar() or 0
            for version, step in enumerate(steps, start=1):
                if version > done:
                    step(conn)
                    log.info("Database: %s schema at version %d", component, version)
            if len(steps) > done:
                conn.execute(upsert(engine, _versions, {"component": component, "version": len(steps)},
                                    ["component"], ["version"]))
        self._migrated.add(key)

    def close(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()


class StateTables:
    """Base of a store over one component's tables (conversations, the Slack bot's): migrated on first use (now,
    or when an unreachable database answers), every database error raised as :class:`DatabaseUnavailable`."""

    component: str
    db_name: str  # the SQLite file's stem in the default setup
    migrations: list[Migration]

    def __init__(self, db: Database, *, owns: bool = False) -> None:
        self.db = db
        self.engine = db.engine(self.db_name)
        self._owns = owns
        self._migrated = False  # every call checks it: the database's own check (a URL rendered) only until then
        try:
            self._ready()
        except DatabaseUnavailable as exc:
            log.warning("%s: the %s tables will be created when it answers", exc, self.component)

    def close(self) -> None:
        if self._owns:
            self.db.close()

    def ping(self) -> None:
        with self._read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def _ready(self) -> None:
        if self._migrated:
            return
        with self._guard(migrating=True):
            self.db.migrate(self.engine, self.component, self.migrations)
        self._migrated = True

    @contextlib.contextmanager
    def _guard(self, migrating: bool = False) -> Iterator[None]:
        try:
            if not migrating:
                self._ready()
            yield
        except sa.exc.SQLAlchemyError as exc:
            raise unavailable(exc) from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._guard(), self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._guard(), write(self.engine) as conn:
            yield conn


@contextlib.contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """One write transaction (SQLite: holding the file's write lock from its start)."""
    with engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            yield conn


def upsert(engine: Engine, table: sa.Table, values: dict[str, Any], keys: list[str], update: list[str],
           where: sa.ColumnElement[bool] | None = None) -> sa.Insert:
    """``INSERT … ON CONFLICT (keys) DO UPDATE SET update…`` [``WHERE where``] (or ``DO NOTHING``): both dialects
    spell it alike, through their own ``insert``."""
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table).values(**values)
    if not update:
        return stmt.on_conflict_do_nothing(index_elements=keys)
    return stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in update}, where=where)
