"""The service's own state on both backends: SQLite files (the default) and PostgreSQL shared by several
processes. Two stores over one database, each with its own connections, stand for two service processes."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rag.models import Answer
from rag.settings import DatabaseSettings
from service.conversations import ConversationStore
from service.database import Database, DatabaseUnavailable
from service.slack.store import SlackStore


def _answer(text: str) -> Answer:
    return Answer(answer=text, language="ar", answerable=True)


def _together(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """``fn(0..n-1)`` in n threads released at once; their results (an exception re-raised)."""
    barrier, results = threading.Barrier(n), [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


def test_a_conversation_alternating_between_two_processes_keeps_its_thread(
        tmp_path: Path, database_url: str | None) -> None:
    a = ConversationStore.open(tmp_path, 200, database_url)
    b = ConversationStore.open(tmp_path, 200, database_url)
    try:
        for i in range(3):
            (a if i % 2 == 0 else b).append_exchange("s1", f"سؤال {i}", _answer(f"جواب {i}"))
        for store in (a, b):
            got = store.get("s1")
            assert got is not None
            assert [t["content"] for t in got["turns"]] == ["سؤال 0", "جواب 0", "سؤال 1", "جواب 1", "سؤال 2", "جواب 2"]
            assert [t.content for t in store.history("s1", 2)] == ["سؤال 2", "جواب 2"]
    finally:
        a.close()
        b.close()


def test_answers_stored_at_once_by_two_processes_lose_no_turn(tmp_path: Path, database_url: str | None) -> None:
    stores = [ConversationStore.open(tmp_path, 200, database_url) for _ in range(2)]
    try:
        _together(8, lambda i: stores[i % 2].append_exchange("busy", f"q{i}", _answer(f"a{i}")))
        got = stores[0].get("busy")
        assert got is not None
        turns = got["turns"]
        assert [t["index"] for t in turns] == list(range(16))
        assert sorted(t["content"] for t in turns if t["role"] == "user") == sorted(f"q{i}" for i in range(8))
        # each answer right after its own question
        assert all(turns[k + 1]["content"] == "a" + turns[k]["content"][1:] for k in range(0, 16, 2))
    finally:
        for s in stores:
            s.close()


def test_one_slack_event_delivered_to_two_processes_is_taken_once(tmp_path: Path, database_url: str | None) -> None:
    stores = [SlackStore.open(tmp_path, database_url) for _ in range(2)]
    try:
        for n in range(5):  # five events, each delivered four times at once, two deliveries per process
            taken = _together(4, lambda i, n=n: stores[i % 2].first_sighting(f"event:E{n}", f"msg:C1:{n}.0"))
            assert taken.count(True) == 1
        # the same message under another event id (an app_mention and its message.im) is not answered again
        assert stores[1].first_sighting("event:other", "msg:C1:0.0") is False
        assert stores[0].first_sighting("event:new", "msg:C1:9.0") is True
    finally:
        for s in stores:
            s.close()


def test_a_rating_given_on_one_process_is_exported_from_the_other(tmp_path: Path, database_url: str | None) -> None:
    a, b = SlackStore.open(tmp_path, database_url), SlackStore.open(tmp_path, database_url)
    try:
        answer_id = a.add_answer("سؤال", _answer("جواب"), [], channel="C1", user="U1")
        assert b.add_feedback(answer_id, "U2", "up", "C1", "1.0") == "ar"
        assert b.add_feedback(answer_id, "U2", "down", "C1", "1.0") == "ar"  # a second click changes it
        assert b.add_feedback("no-such-answer", "U2", "up", None, None) is None
        rows = list(a.feedback_rows())
        assert [(r["user"], r["rating"], r["question"]) for r in rows] == [("U2", "down", "سؤال")]
    finally:
        a.close()
        b.close()


def test_processes_starting_together_create_the_schema_once(tmp_path: Path, database_url: str | None) -> None:
    stores = _together(6, lambda i: (ConversationStore.open(tmp_path, 200, database_url) if i % 2
                                     else SlackStore.open(tmp_path, database_url)))
    try:
        stores[1].append_exchange("s", "q", _answer("a"))
        assert stores[3].exists("s")
        with stores[1].engine.connect() as conn:
            versions = dict(conn.execute(sa.text("SELECT component, version FROM sanad_schema")).all())
        assert versions == {"conversations": 1} if database_url is None else {"conversations": 1, "slack": 1}
    finally:
        for s in stores:
            s.close()


def test_sqlite_files_of_the_earlier_release_are_read_as_they_are(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "conversations.sqlite3") as db:  # the schema the first release created
        db.executescript("""
            CREATE TABLE sessions (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
            CREATE TABLE turns (session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
                idx INTEGER NOT NULL, role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
                content TEXT NOT NULL, answer_json TEXT, rewritten TEXT, created_at TEXT NOT NULL,
                PRIMARY KEY (session_id, idx));
            CREATE INDEX sessions_updated ON sessions(updated_at);
            INSERT INTO sessions VALUES ('old', '2026-01-01T00:00:00.000+00:00', '2026-01-01T00:00:00.000+00:00');
            INSERT INTO turns VALUES ('old', 0, 'user', 'سؤال قديم', NULL, NULL, '2026-01-01T00:00:00.000+00:00');
        """)
    store = ConversationStore.open(tmp_path, 200)
    try:
        assert [t.content for t in store.history("old", 5)] == ["سؤال قديم"]
        store.append_exchange("old", "سؤال جديد", _answer("جواب"))
        assert store.delete("old") and not store.exists("old")
        with store.engine.connect() as conn:  # the turns went with their session (foreign keys on)
            assert conn.execute(sa.text("SELECT COUNT(*) FROM turns")).scalar_one() == 0
    finally:
        store.close()


def test_an_unreachable_database_is_a_clear_error_not_a_crash(tmp_path: Path) -> None:
    url = "postgresql://sanad:secret@127.0.0.1:9/nowhere"  # port 9: nothing listens
    store = ConversationStore.open(tmp_path, 200, url)  # opens; the tables wait for the database
    try:
        with pytest.raises(DatabaseUnavailable, match="database unavailable") as err:
            store.exists("s")
        assert "secret" not in str(err.value)
        assert Database(url, tmp_path).describe() == {"kind": "postgresql",
                                                      "url": "postgresql://sanad:***@127.0.0.1:9/nowhere"}
    finally:
        store.close()


def test_the_database_setting_takes_postgresql_urls_only() -> None:
    assert DatabaseSettings().url is None and DatabaseSettings(url=" ").url is None
    assert DatabaseSettings(url="postgres://u@h/db").url == "postgres://u@h/db"
    with pytest.raises(ValueError, match="postgresql://"):
        DatabaseSettings(url="mysql://u@h/db")


def test_buckets_of_clients_gone_quiet_are_forgotten_and_busy_ones_kept(tmp_path: Path, postgres_url: str) -> None:
    from service.coordination import Coordination

    c = Coordination.open(tmp_path, postgres_url)
    try:
        # 2 tokens refilled at 2 a second: a bucket untouched for a second is full again.
        assert c.take("quiet", capacity=2.0, rate=2.0) == 0.0
        time.sleep(1.2)
        assert c.take("busy", capacity=2.0, rate=2.0) == 0.0
        assert c.forget_full_buckets(capacity=2.0, rate=2.0) == 1
        with c.engine.connect() as conn:
            assert {r[0] for r in conn.execute(sa.text("SELECT client FROM rate_limits"))} == {"busy"}
    finally:
        c.close()
