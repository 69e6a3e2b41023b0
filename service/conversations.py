"""Conversations, kept in the service's database (``service/database.py``: SQLite under the data directory by
default, PostgreSQL when several processes share them); they survive restarts.

A session is a list of turns: each question (with the standalone form it was
searched as) and each answer (text plus the whole answer object). Only the
newest ``max_turns`` turns of a session are kept, and :meth:`ConversationStore.prune`
bounds how many sessions there are and how old they get (the service calls it
periodically, see ``service/retention.py``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rag.models import Answer, Turn
from service.database import Database, StateTables, upsert

DB_NAME = "conversations.sqlite3"
PRUNE_BATCH = 500  # sessions deleted per statement by prune(); other writers go between batches

metadata = sa.MetaData()
# Times are UTC ISO 8601 text to the millisecond (text order is time order), as the first SQLite files had them.
sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
    sa.Index("sessions_updated", "updated_at"),
)
turns = sa.Table(
    "turns", metadata,
    sa.Column("session_id", sa.Text, sa.ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("role", sa.Text, sa.CheckConstraint("role IN ('user', 'assistant')"), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("answer_json", sa.Text),
    sa.Column("rewritten", sa.Text),
    sa.Column("created_at", sa.Text, nullable=False),
)
MIGRATIONS = [lambda conn: metadata.create_all(conn, checkfirst=True)]  # 1: the tables as the first release had them


def _stamp(moment: datetime) -> str:
    """How times are stored: UTC ISO 8601 to the millisecond, so text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _now() -> str:
    return _stamp(datetime.now(UTC))


def _cited_docs(answer_json: str | None) -> list[str]:
    if not answer_json:
        return []
    try:
        citations = json.loads(answer_json).get("citations") or []
    except (ValueError, AttributeError):
        return []
    return list(dict.fromkeys(c["doc_id"] for c in citations if isinstance(c, dict) and "doc_id" in c))


def new_session_id() -> str:
    return uuid.uuid4().hex


class ConversationStore(StateTables):
    """Safe to call from any thread and from several processes (PostgreSQL); a database error raises
    :class:`service.database.DatabaseUnavailable`."""

    component, db_name, migrations = "conversations", DB_NAME.removesuffix(".sqlite3"), MIGRATIONS

    def __init__(self, db: Database, max_turns: int, *, owns: bool = False) -> None:
        self.max_turns = max_turns
        super().__init__(db, owns=owns)

    @classmethod
    def open(cls, data_dir: Path, max_turns: int, url: str | None = None) -> ConversationStore:
        """A store with its own connections: ``data_dir/conversations.sqlite3``, or the database at ``url``."""
        return cls(Database(url, data_dir), max_turns, owns=True)

    # -- reads -------------------------------------------------------------
    def exists(self, session_id: str) -> bool:
        with self._read() as c:
            return c.execute(sa.select(sessions.c.id).where(sessions.c.id == session_id)).first() is not None

    def history(self, session_id: str, limit: int) -> list[Turn]:
        """The last ``limit`` turns, oldest first, as the engine takes them."""
        if limit <= 0:
            return []
        with self._read() as c:
            rows = c.execute(
                sa.select(turns.c.role, turns.c.content, turns.c.answer_json)
                .where(turns.c.session_id == session_id).order_by(turns.c.idx.desc()).limit(limit)
            ).all()
        return [Turn(role=r.role, content=r.content, doc_ids=_cited_docs(r.answer_json)) for r in reversed(rows)]

    def get(self, session_id: str) -> dict[str, Any] | None:
        with self._read() as c:
            session = c.execute(sa.select(sessions).where(sessions.c.id == session_id)).first()
            if session is None:
                return None
            rows = c.execute(
                sa.select(turns.c.idx, turns.c.role, turns.c.content, turns.c.answer_json, turns.c.rewritten,
                          turns.c.created_at).where(turns.c.session_id == session_id).order_by(turns.c.idx)
            ).all()
        out = []
        for r in rows:
            turn: dict[str, Any] = {"index": r.idx, "role": r.role, "content": r.content, "created_at": r.created_at}
            if r.role == "user":
                turn["rewritten_question"] = r.rewritten
            if r.answer_json:
                turn["answer"] = json.loads(r.answer_json)
            out.append(turn)
        return {"id": session.id, "created_at": session.created_at, "updated_at": session.updated_at, "turns": out}

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        first = turns.alias("f")
        first_question = (sa.select(first.c.content)
                          .where(first.c.session_id == sessions.c.id, first.c.role == "user")
                          .order_by(first.c.idx).limit(1).scalar_subquery())
        n = sa.select(sa.func.count()).where(turns.c.session_id == sessions.c.id).scalar_subquery()
        with self._read() as c:
            rows = c.execute(
                sa.select(sessions.c.id, sessions.c.created_at, sessions.c.updated_at, n.label("n"),
                          first_question.label("first_question"))
                .order_by(sessions.c.updated_at.desc()).limit(limit)
            ).all()
        return [{"id": r.id, "created_at": r.created_at, "updated_at": r.updated_at, "turns": r.n,
                 "first_question": r.first_question} for r in rows]

    def count(self) -> int:
        with self._read() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(sessions)).scalar_one())

    # -- writes ------------------------------------------------------------
    def append_exchange(self, session_id: str, question: str, answer: Answer) -> None:
        """Store a question and its answer (creating the session if new), trimmed to ``max_turns``."""
        now = _now()
        answer_json = answer.model_dump_json()
        with self._write() as c:
            c.execute(upsert(self.engine, sessions, {"id": session_id, "created_at": now, "updated_at": now},
                             ["id"], ["updated_at"]))
            # The session's row stays locked to the end (PostgreSQL): two processes appending to one session
            # take their turn numbers one after the other. SQLite's write lock already covers the file.
            c.execute(sa.select(sessions.c.id).where(sessions.c.id == session_id).with_for_update())
            last = c.execute(sa.select(sa.func.coalesce(sa.func.max(turns.c.idx), -1))
                             .where(turns.c.session_id == session_id)).scalar_one()
            c.execute(turns.insert(), [
                {"session_id": session_id, "idx": last + 1, "role": "user", "content": question,
                 "answer_json": None, "rewritten": answer.rewritten_question, "created_at": now},
                {"session_id": session_id, "idx": last + 2, "role": "assistant", "content": answer.answer,
                 "answer_json": answer_json, "rewritten": None, "created_at": now},
            ])
            c.execute(turns.delete().where(turns.c.session_id == session_id,
                                           turns.c.idx <= last + 2 - self.max_turns))

    def delete(self, session_id: str) -> bool:
        with self._write() as c:
            return c.execute(sessions.delete().where(sessions.c.id == session_id)).rowcount > 0

    def set_updated(self, session_id: str, moment: datetime) -> None:
        """Date a session's last update (tests and imports: retention measures age from it)."""
        with self._write() as c:
            c.execute(sessions.update().where(sessions.c.id == session_id).values(updated_at=_stamp(moment)))

    # -- retention ---------------------------------------------------------
    def prune(self, max_age_days: float, max_sessions: int, now: datetime | None = None, *,
              batch_size: int = PRUNE_BATCH, stop: threading.Event | None = None) -> int:
        """Delete sessions not updated for ``max_age_days``, then all but the ``max_sessions`` most
        recently updated ones (their turns go with them). Returns how many sessions were deleted.

        Works in batches of ``batch_size`` sessions, each its own short transaction, so answers being
        stored meanwhile wait for one batch at most. When ``stop`` is set it returns after the batch in
        progress. ``now`` (default: the current time; a naive value is taken as UTC) is what the age is
        measured from.
        """
        if max_sessions < 0:
            raise ValueError("max_sessions must be >= 0")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        moment = now or datetime.now(UTC)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        removed = 0
        try:
            cutoff: str | None = _stamp(moment - timedelta(days=max_age_days))
        except OverflowError:  # an age reaching before year 1: nothing is that old
            cutoff = None
        if cutoff is not None:
            removed += self._delete_batches(sessions.c.updated_at < cutoff, batch_size, stop)
        # The newest session beyond the cap (ties on updated_at broken by id): it and everything
        # older go. Sessions updated meanwhile are newer than it, so they are never taken.
        with self._read() as c:
            edge = c.execute(sa.select(sessions.c.updated_at, sessions.c.id)
                             .order_by(sessions.c.updated_at.desc(), sessions.c.id.desc())
                             .limit(1).offset(max_sessions)).first()
        if edge is not None:
            older = sa.or_(sessions.c.updated_at < edge.updated_at,
                           sa.and_(sessions.c.updated_at == edge.updated_at, sessions.c.id <= edge.id))
            removed += self._delete_batches(older, batch_size, stop)
        return removed

    def _delete_batches(self, which: sa.ColumnElement[bool], batch_size: int, stop: threading.Event | None) -> int:
        removed = 0
        batch = sa.select(sessions.c.id).where(which).order_by(sessions.c.updated_at).limit(batch_size)
        while stop is None or not stop.is_set():
            with self._write() as c:
                n = c.execute(sessions.delete().where(sessions.c.id.in_(batch.scalar_subquery()))).rowcount
            removed += n
            if n < batch_size:
                break
            time.sleep(0)  # let a thread waiting to store an answer go between batches
        return removed
