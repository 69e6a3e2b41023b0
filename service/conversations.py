"""Conversations in SQLite (stdlib, WAL) under the data directory; they survive restarts.

A session is a list of turns: each question (with the standalone form it was
searched as) and each answer (text plus the whole answer object). Only the
newest ``max_turns`` turns of a session are kept, and :meth:`ConversationStore.prune`
bounds how many sessions there are and how old they get (the service calls it
periodically, see ``service/retention.py``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rag.models import Answer, Turn

DB_NAME = "conversations.sqlite3"
PRUNE_BATCH = 500  # sessions deleted per statement by prune(); the lock is released between batches

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    answer_json TEXT,
    rewritten TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (session_id, idx)
);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions(updated_at);
"""


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


class ConversationStore:
    """One connection guarded by a lock; safe to call from any thread."""

    def __init__(self, path: Path, max_turns: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_turns = max_turns
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)

    @classmethod
    def open(cls, data_dir: Path, max_turns: int) -> ConversationStore:
        return cls(data_dir / DB_NAME, max_turns)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def ping(self) -> None:
        with self._lock:
            self._db.execute("SELECT 1").fetchone()

    # -- reads -------------------------------------------------------------
    def exists(self, session_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is not None

    def history(self, session_id: str, limit: int) -> list[Turn]:
        """The last ``limit`` turns, oldest first, as the engine takes them."""
        if limit <= 0:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT role, content, answer_json FROM turns WHERE session_id = ? ORDER BY idx DESC LIMIT ?",
                (session_id, limit),
            ).fetchall()
        return [Turn(role=r["role"], content=r["content"], doc_ids=_cited_docs(r["answer_json"]))
                for r in reversed(rows)]

    def get(self, session_id: str) -> dict[str, Any] | None:
        with self._lock:
            session = self._db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if session is None:
                return None
            rows = self._db.execute(
                "SELECT idx, role, content, answer_json, rewritten, created_at FROM turns "
                "WHERE session_id = ? ORDER BY idx", (session_id,)
            ).fetchall()
        turns = []
        for r in rows:
            turn: dict[str, Any] = {"index": r["idx"], "role": r["role"], "content": r["content"],
                                    "created_at": r["created_at"]}
            if r["role"] == "user":
                turn["rewritten_question"] = r["rewritten"]
            if r["answer_json"]:
                turn["answer"] = json.loads(r["answer_json"])
            turns.append(turn)
        return {"id": session["id"], "created_at": session["created_at"], "updated_at": session["updated_at"],
                "turns": turns}

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT s.id, s.created_at, s.updated_at, COUNT(t.idx) AS n, "
                "(SELECT content FROM turns f WHERE f.session_id = s.id AND f.role = 'user' ORDER BY f.idx LIMIT 1)"
                " AS first_question "
                "FROM sessions s LEFT JOIN turns t ON t.session_id = s.id "
                "GROUP BY s.id ORDER BY s.updated_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [{"id": r["id"], "created_at": r["created_at"], "updated_at": r["updated_at"], "turns": r["n"],
                 "first_question": r["first_question"]} for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    # -- writes ------------------------------------------------------------
    def append_exchange(self, session_id: str, question: str, answer: Answer) -> None:
        """Store a question and its answer (creating the session if new), trimmed to ``max_turns``."""
        now = _now()
        answer_json = answer.model_dump_json()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT OR IGNORE INTO sessions (id, created_at, updated_at) VALUES (?, ?, ?)",
                           (session_id, now, now))
                db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))
                last = db.execute("SELECT COALESCE(MAX(idx), -1) FROM turns WHERE session_id = ?",
                                  (session_id,)).fetchone()[0]
                db.executemany(
                    "INSERT INTO turns (session_id, idx, role, content, answer_json, rewritten, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(session_id, last + 1, "user", question, None, answer.rewritten_question, now),
                     (session_id, last + 2, "assistant", answer.answer, answer_json, None, now)],
                )
                db.execute("DELETE FROM turns WHERE session_id = ? AND idx <= ?",
                           (session_id, last + 2 - self.max_turns))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def delete(self, session_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            return cur.rowcount > 0

    # -- retention ---------------------------------------------------------
    def prune(self, max_age_days: float, max_sessions: int, now: datetime | None = None, *,
              batch_size: int = PRUNE_BATCH, stop: threading.Event | None = None) -> int:
        """Delete sessions not updated for ``max_age_days``, then all but the ``max_sessions`` most
        recently updated ones (their turns go with them). Returns how many sessions were deleted.

        Works in batches of ``batch_size`` sessions, each its own short transaction with the lock
        released in between, so answers being stored meanwhile wait for one batch at most. When
        ``stop`` is set it returns after the batch in progress. ``now`` (default: the current time;
        a naive value is taken as UTC) is what the age is measured from.
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
            removed += self._delete_batches(
                "DELETE FROM sessions WHERE id IN "
                "(SELECT id FROM sessions WHERE updated_at < ? ORDER BY updated_at LIMIT ?)",
                (cutoff, batch_size), batch_size, stop)
        # The newest session beyond the cap (ties on updated_at broken by id): it and everything
        # older go. Sessions updated meanwhile are newer than it, so they are never taken.
        with self._lock:
            edge = self._db.execute(
                "SELECT updated_at, id FROM sessions ORDER BY updated_at DESC, id DESC LIMIT 1 OFFSET ?",
                (max_sessions,),
            ).fetchone()
        if edge is not None:
            removed += self._delete_batches(
                "DELETE FROM sessions WHERE id IN "
                "(SELECT id FROM sessions WHERE updated_at < ? OR (updated_at = ? AND id <= ?) "
                "ORDER BY updated_at LIMIT ?)",
                (edge["updated_at"], edge["updated_at"], edge["id"], batch_size), batch_size, stop)
        return removed

    def _delete_batches(self, sql: str, params: tuple[Any, ...], batch_size: int,
                        stop: threading.Event | None) -> int:
        removed = 0
        while stop is None or not stop.is_set():
            with self._lock:
                n = self._db.execute(sql, params).rowcount
            removed += n
            if n < batch_size:
                break
            time.sleep(0)  # let a thread waiting for the lock (an answer being stored) take it
        return removed
