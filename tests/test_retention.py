"""Bounded stored conversations: ConversationStore.prune and the service's retention task."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rag.engine import Sanad
from rag.models import Answer
from rag.settings import ServiceSettings, Settings
from service.app import create_app
from service.conversations import ConversationStore
from service.database import DatabaseUnavailable
from service.retention import Retention

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
QUESTION = "من شارك في الاجتماع الأمني الذي استضافته القاهرة؟"
WAIT = 60.0  # generous upper bound for waits on the background task; never a fixed sleep


def _answer() -> Answer:
    return Answer(answer="جواب", language="ar", answerable=True)


def _add(store: ConversationStore, sid: str, updated: datetime) -> None:
    """A session with one exchange, last updated at ``updated``."""
    store.append_exchange(sid, "سؤال", _answer())
    store.set_updated(sid, updated)


def _ids(store: ConversationStore) -> set[str]:
    return {s["id"] for s in store.list(limit=10_000)}


def _turn_count(store: ConversationStore) -> int:
    with store.engine.connect() as db:
        return int(db.execute(sa.text("SELECT COUNT(*) FROM turns")).scalar_one())


@pytest.fixture
def store(tmp_path: Path, database_url: str | None) -> Any:
    s = ConversationStore.open(tmp_path, max_turns=10, url=database_url)
    yield s
    s.close()


# -- the store -------------------------------------------------------------------------------------


def test_prune_deletes_sessions_older_than_the_age(store: ConversationStore) -> None:
    _add(store, "ancient", NOW - timedelta(days=400))
    _add(store, "old", NOW - timedelta(days=91))
    _add(store, "recent", NOW - timedelta(days=89))
    _add(store, "today", NOW - timedelta(minutes=1))

    assert store.prune(max_age_days=90, max_sessions=100, now=NOW) == 2
    assert _ids(store) == {"recent", "today"}
    assert store.get("old") is None and store.get("ancient") is None
    assert _turn_count(store) == 4  # the deleted sessions' turns went with them (2 sessions x 2 turns)
    assert store.prune(max_age_days=90, max_sessions=100, now=NOW) == 0


def test_prune_age_with_fractional_days_and_naive_now(store: ConversationStore) -> None:
    _add(store, "two-hours", NOW - timedelta(hours=2))
    _add(store, "half-hour", NOW - timedelta(minutes=30))
    # A naive ``now`` is UTC; 1/24 day is one hour.
    assert store.prune(max_age_days=1 / 24, max_sessions=100, now=NOW.replace(tzinfo=None)) == 1
    assert _ids(store) == {"half-hour"}


def test_prune_with_the_real_clock_keeps_what_was_just_written(store: ConversationStore) -> None:
    store.append_exchange("fresh", "سؤال", _answer())
    _add(store, "stale", datetime.now(UTC) - timedelta(days=30))
    assert store.prune(max_age_days=7, max_sessions=100) == 1
    assert _ids(store) == {"fresh"}


def test_prune_count_cap_keeps_the_newest(store: ConversationStore) -> None:
    for i in range(7):
        _add(store, f"s{i}", NOW - timedelta(hours=10 - i))  # s6 is the newest
    assert store.prune(max_age_days=90, max_sessions=3, now=NOW) == 4
    assert _ids(store) == {"s4", "s5", "s6"}
    assert _turn_count(store) == 6
    assert store.prune(max_age_days=90, max_sessions=3, now=NOW) == 0


def test_prune_count_cap_breaks_ties_deterministically(store: ConversationStore) -> None:
    for sid in ("a", "b", "c", "d"):
        _add(store, sid, NOW - timedelta(hours=1))  # all updated in the same millisecond
    assert store.prune(max_age_days=90, max_sessions=2, now=NOW) == 2
    assert _ids(store) == {"c", "d"}  # ties go by id, highest kept


def test_prune_age_and_cap_together(store: ConversationStore) -> None:
    _add(store, "expired", NOW - timedelta(days=100))
    for i in range(4):
        _add(store, f"s{i}", NOW - timedelta(days=4 - i))
    assert store.prune(max_age_days=90, max_sessions=2, now=NOW) == 3
    assert _ids(store) == {"s2", "s3"}


def test_prune_works_in_batches(store: ConversationStore) -> None:
    for i in range(23):
        _add(store, f"s{i:02d}", NOW - timedelta(days=200, minutes=i))
    for i in range(5):
        _add(store, f"k{i}", NOW - timedelta(minutes=i))
    calls: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        calls.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        assert store.prune(max_age_days=90, max_sessions=3, now=NOW, batch_size=5) == 25
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)
    deletes = [sql for sql in calls if sql.startswith("DELETE")]
    # 23 expired: 5 + 5 + 5 + 5 + 3; then 2 beyond the cap in one batch.
    assert len(deletes) == 6
    assert _ids(store) == {"k0", "k1", "k2"}


def test_prune_stops_between_batches_when_asked(store: ConversationStore) -> None:
    for i in range(4):
        _add(store, f"s{i}", NOW - timedelta(days=200))
    stop = threading.Event()
    stop.set()
    assert store.prune(max_age_days=90, max_sessions=1, now=NOW, stop=stop) == 0
    assert len(_ids(store)) == 4


def test_prune_an_empty_store_and_huge_ages(store: ConversationStore) -> None:
    assert store.prune(max_age_days=90, max_sessions=1, now=NOW) == 0
    _add(store, "old", datetime(1990, 1, 1, tzinfo=UTC))
    assert store.prune(max_age_days=1e12, max_sessions=5, now=NOW) == 0  # beyond what a date can express
    assert store.prune(max_age_days=float("inf"), max_sessions=5, now=NOW) == 0
    assert _ids(store) == {"old"}


def test_settings_defaults_and_bounds() -> None:
    s = ServiceSettings()
    assert (s.conversation_max_age_days, s.max_conversations, s.retention_interval_seconds) == (90, 10_000, 600)
    for bad in ({"conversation_max_age_days": 0}, {"max_conversations": 0}, {"retention_interval_seconds": 0}):
        with pytest.raises(ValueError):
            ServiceSettings(**bad)  # type: ignore[arg-type]
    for name in ("conversation_max_age_days", "max_conversations", "retention_interval_seconds"):
        assert ServiceSettings.model_fields[name].description


# -- the service -----------------------------------------------------------------------------------


def _wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _retention(client: TestClient) -> Retention:
    retention = client.app.state.retention  # type: ignore[attr-defined]
    assert isinstance(retention, Retention)
    return retention


def test_service_prunes_at_start_up_and_keeps_at_most_max_conversations(
        tmp_path: Path, seeded_engine: Sanad) -> None:
    # Conversations left by an earlier run: two expired, three recent.
    earlier = ConversationStore.open(tmp_path, max_turns=10)
    now = datetime.now(UTC)
    _add(earlier, "expired-1", now - timedelta(days=120))
    _add(earlier, "expired-2", now - timedelta(days=95))
    for i in range(3):
        _add(earlier, f"recent-{i}", now - timedelta(hours=3 - i))
    earlier.close()

    service = ServiceSettings(max_conversations=2, conversation_max_age_days=90,
                              retention_interval_seconds=3600)  # only the start-up pass runs on its own
    with TestClient(create_app(Settings.in_memory(tmp_path, service=service), seeded_engine)) as c:
        retention = _retention(c)
        assert retention.first_pass.wait(WAIT), "the start-up retention pass did not finish"
        assert retention.passes == 1 and retention.removed == 3
        assert {s["id"] for s in c.get("/v1/sessions").json()["sessions"]} == {"recent-1", "recent-2"}
        assert c.get("/v1/sessions/expired-1").status_code == 404

        # New conversations while serving: the cap is exceeded until the next pass.
        for _ in range(3):
            r = c.post("/v1/chat", json={"question": QUESTION})
            assert r.status_code == 200, r.text
        before = c.get("/v1/sessions").json()["sessions"]
        assert len(before) == 5
        newest = {s["id"] for s in sorted(before, key=lambda s: (s["updated_at"], s["id"]))[-2:]}

        assert retention.run_once() == 3  # the pass the background task runs, here on demand
        after = c.get("/v1/sessions").json()["sessions"]
        assert {s["id"] for s in after} == newest
        # A pruned conversation cannot be continued; a new one can be started.
        gone = next(s["id"] for s in before if s["id"] not in newest)
        assert c.post("/v1/chat", json={"question": QUESTION, "session_id": gone}).status_code == 404
        task = retention.task
        assert task is not None and not task.done()
    # Shut down cleanly: the task has ended and the store is closed.
    assert task.done() and retention.task is None


def test_service_prunes_every_interval(tmp_path: Path, seeded_engine: Sanad) -> None:
    service = ServiceSettings(max_conversations=1, retention_interval_seconds=0.01)
    with TestClient(create_app(Settings.in_memory(tmp_path, service=service), seeded_engine)) as c:
        retention = _retention(c)
        assert retention.first_pass.wait(WAIT)
        for _ in range(3):
            assert c.post("/v1/chat", json={"question": QUESTION}).status_code == 200
        seen = retention.passes
        # Two more passes: the second surely started after the sessions were stored.
        _wait_for(lambda: retention.passes >= seen + 2, "periodic retention passes")
        assert len(c.get("/v1/sessions").json()["sessions"]) == 1


def test_a_failing_pass_is_logged_and_the_service_keeps_answering(
        tmp_path: Path, seeded_engine: Sanad, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: ConversationStore, *args: Any, **kwargs: Any) -> int:
        raise DatabaseUnavailable("database unavailable: disk I/O error")

    monkeypatch.setattr(ConversationStore, "prune", broken)
    service = ServiceSettings(retention_interval_seconds=0.01)
    with (caplog.at_level(logging.ERROR, logger="sanad.service"),
          TestClient(create_app(Settings.in_memory(tmp_path, service=service), seeded_engine)) as c):
        retention = _retention(c)
        _wait_for(lambda: retention.passes >= 3, "retention passes")
        assert c.post("/v1/chat", json={"question": QUESTION}).status_code == 200
        assert c.get("/readyz").status_code == 200
        task = retention.task
        assert task is not None and not task.done()
    assert any("Retention pass failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_shutdown_waits_for_the_batch_in_progress(tmp_path: Path, seeded_engine: Sanad,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping while a pass runs in its thread: prune is told to stop, and the store closes after it."""
    entered, finished = threading.Event(), threading.Event()
    closed_after: list[bool] = []

    def slow(self: ConversationStore, *args: Any, stop: threading.Event | None = None, **kwargs: Any) -> int:
        entered.set()
        assert stop is not None
        _wait_for(stop.is_set, "the stop request")  # a batch that lasts until shutdown begins
        self.ping()  # the store is still open
        finished.set()
        return 0

    real_close = ConversationStore.close

    def close(self: ConversationStore) -> None:
        closed_after.append(finished.is_set())
        real_close(self)

    monkeypatch.setattr(ConversationStore, "prune", slow)
    monkeypatch.setattr(ConversationStore, "close", close)
    with TestClient(create_app(Settings.in_memory(tmp_path), seeded_engine)):
        assert entered.wait(WAIT)
    assert finished.is_set() and closed_after == [True]
