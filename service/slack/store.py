"""The Slack bot's own tables, in the service's database (``service/database.py``: by default the SQLite file
``<data_dir>/feedback.sqlite3``; with ``database.url``, PostgreSQL shared by every service process).

* ``answers``: every answer the bot gave (question, answer, cited documents, the
  turns it followed), so a 👍/👎 click carries only the answer's id.
* ``feedback``: one rating per user and answer (a second click changes it).
* ``seen``: event ids and message keys already taken, so Slack's retries (and an
  ``app_mention`` plus ``message.im`` for one message), wherever they land, never answer twice; kept a day.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rag.models import Answer, Turn
from service.database import Database, StateTables, upsert

DB_NAME = "feedback.sqlite3"
SEEN_TTL = 24 * 3600.0

metadata = sa.MetaData()
answers = sa.Table(
    "answers", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("answerable", sa.Integer, nullable=False),
    sa.Column("citations", sa.Text, nullable=False),
    sa.Column("turns", sa.Text, nullable=False),
    sa.Column("answer_json", sa.Text, nullable=False),
    sa.Column("team", sa.Text),
    sa.Column("channel", sa.Text),
    sa.Column("thread_ts", sa.Text),
    sa.Column("message_ts", sa.Text),
    sa.Column("user", sa.Text),
    sa.Column("created_at", sa.Text, nullable=False),
)
feedback = sa.Table(
    "feedback", metadata,
    sa.Column("answer_id", sa.Text, sa.ForeignKey("answers.id"), primary_key=True),
    sa.Column("user", sa.Text, primary_key=True),
    sa.Column("rating", sa.Text, sa.CheckConstraint("rating IN ('up', 'down')"), nullable=False),
    sa.Column("channel", sa.Text),
    sa.Column("message_ts", sa.Text),
    sa.Column("created_at", sa.Text, nullable=False),
)
seen = sa.Table(
    "seen", metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("seen_at", "at"),
)
MIGRATIONS = [lambda conn: metadata.create_all(conn, checkfirst=True)]  # 1: the tables as the first release had them


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SlackStore(StateTables):
    """Safe from any thread and any number of processes (calls are milliseconds); a database error raises
    :class:`service.database.DatabaseUnavailable`."""

    component, db_name, migrations = "slack", DB_NAME.removesuffix(".sqlite3"), MIGRATIONS

    def __init__(self, db: Database, *, owns: bool = False) -> None:
        self._inserts = 0
        super().__init__(db, owns=owns)

    @classmethod
    def open(cls, data_dir: Path, url: str | None = None) -> SlackStore:
        """A store with its own connections: ``data_dir/feedback.sqlite3``, or the database at ``url``."""
        return cls(Database(url, data_dir), owns=True)

    # -- retries -------------------------------------------------------------------------------
    def first_sighting(self, *keys: str) -> bool:
        """Record ``keys``; True only if none of them was seen within a day (atomic across processes: of two
        deliveries of one event, on one process or two, exactly one gets True)."""
        now = time.time()
        keys = tuple(dict.fromkeys(k for k in keys if k))
        fresh = True
        with self._write() as c:
            for k in keys:
                # Inserted, or a stale row taken over: this call is the first sighting of ``k``. A row seen within
                # the day is left as it is (the WHERE) and returns nothing. PostgreSQL: a concurrent insert of the
                # same key waits for this transaction, then finds the row.
                got = c.execute(upsert(self.engine, seen, {"key": k, "at": now}, ["key"], ["at"],
                                       where=seen.c.at <= now - SEEN_TTL).returning(seen.c.key)).first()
                fresh = fresh and got is not None
            self._inserts += 1
            if self._inserts % 500 == 0:
                c.execute(seen.delete().where(seen.c.at <= now - SEEN_TTL))
        return fresh

    # -- answers and ratings -------------------------------------------------------------------
    def add_answer(self, question: str, answer: Answer, history: list[Turn], *, team: str | None = None,
                   channel: str | None = None, thread_ts: str | None = None, user: str | None = None) -> str:
        answer_id = uuid.uuid4().hex
        doc_ids = list(dict.fromkeys(c.doc_id for c in answer.citations))
        with self._write() as c:
            c.execute(answers.insert().values(
                id=answer_id, question=question, answer=answer.answer, language=answer.language,
                answerable=int(answer.answerable), citations=json.dumps(doc_ids, ensure_ascii=False),
                turns=json.dumps([t.model_dump() for t in history], ensure_ascii=False),
                answer_json=answer.model_dump_json(), team=team, channel=channel, thread_ts=thread_ts, user=user,
                created_at=_now()))
        return answer_id

    def set_message_ts(self, answer_id: str, ts: str) -> None:
        with self._write() as c:
            c.execute(answers.update().where(answers.c.id == answer_id).values(message_ts=ts))

    def add_feedback(self, answer_id: str, user: str, rating: str, channel: str | None,
                     message_ts: str | None) -> str | None:
        """Store (or change) ``user``'s rating of an answer; returns the answer's language, or
        ``None`` for an unknown answer id (nothing stored)."""
        if rating not in ("up", "down"):
            raise ValueError(f"rating must be 'up' or 'down', not {rating!r}")
        with self._write() as c:
            language = c.execute(sa.select(answers.c.language).where(answers.c.id == answer_id)).scalar()
            if language is None:
                return None
            c.execute(upsert(self.engine, feedback,
                             {"answer_id": answer_id, "user": user, "rating": rating, "channel": channel,
                              "message_ts": message_ts, "created_at": _now()},
                             ["answer_id", "user"], ["rating", "channel", "message_ts", "created_at"]))
        return str(language)

    def feedback_rows(self) -> Iterator[dict[str, Any]]:
        f, a = feedback, answers
        query = (sa.select(f.c.answer_id, f.c.user, f.c.rating, f.c.channel.label("f_channel"),
                           f.c.message_ts.label("f_ts"), f.c.created_at.label("rated_at"), *a.c)
                 .join_from(f, a, a.c.id == f.c.answer_id)
                 .order_by(f.c.created_at, f.c.answer_id, f.c.user))
        with self._read() as c:
            rows = c.execute(query).mappings().all()
        for r in rows:
            yield dict(r)
