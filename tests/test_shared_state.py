"""Several service processes on one PostgreSQL database, in one test process: each app below has its own
connections, rate limiter and runtime, as a process behind a load balancer has; they share the index (one seeded
engine) and the database. The same routes on the SQLite default are covered by the rest of the suite."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag.engine import Sanad
from rag.settings import DatabaseSettings, ServiceSettings, Settings
from service.app import create_app
from tests.postgres import PostgresServer, new_database, server

Q_WHO = "من شارك في الاجتماع الأمني الذي استضافته القاهرة؟"
Q_WHEN = "ومتى عقد؟"
WAIT = 30.0


def _settings(tmp_path: Path, name: str, url: str, **service: Any) -> Settings:
    return Settings.in_memory(tmp_path / name, database=DatabaseSettings(url=url),
                              service=ServiceSettings(**service), api_keys="k1,k2")


@contextmanager
def _apps(tmp_path: Path, url: str, engine: Sanad, n: int = 2, **service: Any) -> Iterator[list[TestClient]]:
    """``n`` service "processes" (apps with their own settings, connections and runtime), started."""
    with ExitStack() as stack:
        yield [stack.enter_context(TestClient(create_app(_settings(tmp_path, f"p{i}", url, **service), engine)))
               for i in range(n)]


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


AUTH = {"Authorization": "Bearer k1"}


def test_a_conversation_goes_on_whichever_process_takes_the_next_turn(
        tmp_path: Path, seeded_engine: Sanad, postgres_url: str) -> None:
    with _apps(tmp_path, postgres_url, seeded_engine) as (a, b):
        first = a.post("/v1/chat", json={"question": Q_WHO}, headers=AUTH).json()
        follow = b.post("/v1/chat", json={"question": Q_WHEN, "session_id": first["session_id"]}, headers=AUTH)
        assert follow.status_code == 200, follow.text
        body = follow.json()
        assert body["session_id"] == first["session_id"] and not body["degraded"]
        assert "القاهرة" in (body["rewritten_question"] or "")  # read with the turn the other process stored
        turns = a.get(f"/v1/sessions/{first['session_id']}", headers=AUTH).json()["turns"]
        assert [t["content"] for t in turns if t["role"] == "user"] == [Q_WHO, Q_WHEN]


def test_n_requests_a_minute_across_two_processes_not_2n(tmp_path: Path, seeded_engine: Sanad,
                                                          postgres_url: str) -> None:
    with _apps(tmp_path, postgres_url, seeded_engine, rate_limit_per_minute=4) as (a, b):
        codes = [(a if i % 2 else b).get("/v1/documents", headers=AUTH).status_code for i in range(8)]
        assert codes.count(200) == 4 and codes.count(429) == 4
        assert a.get("/v1/documents", headers={"Authorization": "Bearer k2"}).status_code == 200  # its own bucket


def test_one_process_runs_the_jobs_and_another_takes_them_over(tmp_path: Path, seeded_engine: Sanad,
                                                               postgres_url: str) -> None:
    clients = [TestClient(create_app(_settings(tmp_path, f"p{i}", postgres_url, jobs_lease_seconds=1.0),
                                     seeded_engine)) for i in range(3)]
    for c in clients:
        c.__enter__()
    try:
        runtimes = [c.app.state.runtime for c in clients]  # type: ignore[attr-defined]
        assert [r.leading for r in runtimes].count(True) == 1
        leader = next(i for i, r in enumerate(runtimes) if r.leading)
        jobs = clients[leader].get("/readyz").json()["database"]["jobs"]
        assert jobs["this_process"] and jobs["holder"] == runtimes[leader].holder
        assert clients[leader].app.state.retention.task is not None  # type: ignore[attr-defined]
        others = [r for i, r in enumerate(runtimes) if i != leader]
        assert all(r.retention.task is None for r in others)  # not started where the lease is not held
        # The leader goes away (its lease released on the way out): one of the others takes the jobs at its
        # next renewal, a third of the lease's time later.
        clients.pop(leader).__exit__(None, None, None)
        took = _wait_for(lambda: any(r.leading for r in others), "another process to take the jobs")
        assert took < 1.0 and [r.leading for r in others].count(True) == 1
        survivor = next(r for r in others if r.leading)
        _wait_for(lambda: survivor.retention.passes >= 1, "the new leader's retention pass")
    finally:
        for c in clients:
            c.__exit__(None, None, None)


def test_a_database_that_goes_away_costs_memory_not_answers_and_comes_back(
        tmp_path: Path, seeded_engine: Sanad) -> None:
    try:
        cm = server()
        pg: PostgresServer = cm.__enter__()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        url = new_database(pg.url)
        with TestClient(create_app(_settings(tmp_path, "p", url), seeded_engine)) as c:
            session = c.post("/v1/chat", json={"question": Q_WHO}, headers=AUTH).json()["session_id"]
            pg.stop()
            r = c.post("/v1/chat", json={"question": Q_WHEN, "session_id": session}, headers=AUTH)
            assert r.status_code == 200 and r.json()["degraded"] and r.json()["session_id"] is None
            fresh = c.post("/v1/chat", json={"question": Q_WHO}, headers=AUTH).json()
            assert fresh["answerable"] and fresh["degraded"] and fresh["session_id"] is None
            gone = c.get(f"/v1/sessions/{session}", headers=AUTH)
            assert gone.status_code == 503 and gone.json()["error"]["code"] == "database_unavailable"
            ready = c.get("/readyz").json()
            assert ready["status"] == "degraded" and ready["database"]["ok"] is False
            assert ready["database"]["kind"] == "postgresql"
            pg.start()  # back, on the same port: no restart of the service
            _wait_for(lambda: c.get("/readyz").json()["database"]["ok"], "the database to be reachable again")
            again = c.post("/v1/chat", json={"question": Q_WHEN, "session_id": session}, headers=AUTH).json()
            assert again["session_id"] == session and not again["degraded"]
            assert len(c.get(f"/v1/sessions/{session}", headers=AUTH).json()["turns"]) == 4
    finally:
        cm.__exit__(None, None, None)


def test_an_upload_taken_by_another_process_is_filled_by_the_one_running_the_jobs(
        tmp_path: Path, engine: Sanad, postgres_url: str) -> None:
    rows = [{"id": f"brief-{i}", "title": f"خبر {i}", "date": "2015-07-22",
             "text": f"افتتحت البلدية الحديقة رقم {i} في حي النسيم بمساحة {1000 + i} متر مربع وزودتها بممرات للمشاة."}
            for i in range(6)]
    with _apps(tmp_path, postgres_url, engine, jobs_lease_seconds=1.0) as clients:
        runtimes = [c.app.state.runtime for c in clients]  # type: ignore[attr-defined]
        leader = next(i for i, r in enumerate(runtimes) if r.leading)
        taker = clients[1 - leader]
        for c in clients:
            c.app.state.settings.index.inline_dense_articles = 0  # every upload filled in the background
        r = taker.post("/v1/documents", headers=AUTH,
                       files={"file": ("briefs.json", json.dumps(rows, ensure_ascii=False))})
        assert r.status_code == 201 and engine.store.count_dense_pending() > 0
        _wait_for(lambda: engine.store.count_dense_pending() == 0, "the jobs' process to fill the upload")
        assert runtimes[1 - leader]._dense is None  # the process that took the upload never filled
