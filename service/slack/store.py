"""The Slack bot's own SQLite file, ``<data_dir>/feedback.sqlite3``.

* ``answers``: every answer the bot gave (question, answer, cited documents, the
  turns it followed), so a 👍/👎 click carries only the answer's id.
* ``feedback``: one rating per user and answer (a second click changes it).
* ``seen``: event ids and message keys already taken, so Slack's retries (and an
  ``app_mention`` plus ``message.im`` for one message) never answer twice; kept a day.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.models import Answer, Turn

DB_NAME = "feedback.sqlite3"
SEEN_TTL = 24 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    language TEXT NOT NULL,
    answerable INTEGER NOT NULL,
    citations TEXT NOT NULL,
    turns TEXT NOT NULL,
    answer_json TEXT NOT NULL,
    team TEXT,
    channel TEXT,
    thread_ts TEXT,
    message_ts TEXT,
    user TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    answer_id TEXT NOT NULL REFERENCES answers(id),
    user TEXT NOT NULL,
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    channel TEXT,
    message_ts TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (answer_id, user)
);
CREATE TABLE IF NOT EXISTS seen (
    key TEXT PRIMARY KEY,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_at ON seen(at);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SlackStore:
    """One connection guarded by a lock; safe from any thread (calls are milliseconds)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._inserts = 0
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    @classmethod
    def open(cls, data_dir: Path) -> SlackStore:
        return cls(data_dir / DB_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- retries -------------------------------------------------------------------------------
    def first_sighting(self, *keys: str) -> bool:
        """Record ``keys``; True only if none of them was seen before (atomic: one caller wins)."""
        now = time.time()
        keys = tuple(k for k in keys if k)
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                seen = any(
                    db.execute("SELECT 1 FROM seen WHERE key = ? AND at > ?", (k, now - SEEN_TTL)).fetchone()
                    for k in keys
                )
                if not seen:
                    db.executemany("INSERT OR REPLACE INTO seen (key, at) VALUES (?, ?)", [(k, now) for k in keys])
                    self._inserts += 1
                    if self._inserts % 500 == 0:
                        db.execute("DELETE FROM seen WHERE at <= ?", (now - SEEN_TTL,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return not seen

    # -- answers and ratings -------------------------------------------------------------------
    def add_answer(self, question: str, answer: Answer, history: list[Turn], *, team: str | None = None,
                   channel: str | None = None, thread_ts: str | None = None, user: str | None = None) -> str:
        answer_id = uuid.uuid4().hex
        doc_ids = list(dict.fromkeys(c.doc_id for c in answer.citations))
        with self._lock:
            self._db.execute(
                "INSERT INTO answers (id, question, answer, language, answerable, citations, turns, answer_json, "
                "team, channel, thread_ts, user, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (answer_id, question, answer.answer, answer.language, int(answer.answerable),
                 json.dumps(doc_ids, ensure_ascii=False),
                 json.dumps([t.model_dump() for t in history], ensure_ascii=False),
                 answer.model_dump_json(), team, channel, thread_ts, user, _now()),
            )
        return answer_id

    def set_message_ts(self, answer_id: str, ts: str) -> None:
        with self._lock:
            self._db.execute("UPDATE answers SET message_ts = ? WHERE id = ?", (ts, answer_id))

    def add_feedback(self, answer_id: str, user: str, rating: str, channel: str | None,
                     message_ts: str | None) -> str | None:
        """Store (or change) ``user``'s rating of an answer; returns the answer's language, or
        ``None`` for an unknown answer id (nothing stored)."""
        if rating not in ("up", "down"):
            raise ValueError(f"rating must be 'up' or 'down', not {rating!r}")
        with self._lock:
            row = self._db.execute("SELECT language FROM answers WHERE id = ?", (answer_id,)).fetchone()
            if row is None:
                return None
            self._db.execute(
                "INSERT INTO feedback (answer_id, user, rating, channel, message_ts, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (answer_id, user) DO UPDATE SET "
                "rating = excluded.rating, channel = excluded.channel, message_ts = excluded.message_ts, "
                "created_at = excluded.created_at",
                (answer_id, user, rating, channel, message_ts, _now()),
            )
        return str(row["language"])

    def feedback_rows(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT f.answer_id, f.user, f.rating, f.channel AS f_channel, f.message_ts AS f_ts, "
                "f.created_at AS rated_at, a.* FROM feedback f JOIN answers a ON a.id = f.answer_id "
                "ORDER BY f.created_at, f.answer_id, f.user"
            ).fetchall()
        for r in rows:
            yield dict(r)
