"""Two ``sanad serve`` processes behind one address book, as a newsroom that outgrew one process runs them: one
PostgreSQL database for their state, one Qdrant-compatible server for the vectors (the project's fake server),
a Slack app and an RSS feed both pointing at them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from index.ingest import Indexer
from rag.engine import Sanad
from rag.settings import QdrantSettings, Settings
from tests.conftest import VECTOR_CACHE
from tests.fakes.qdrant_server import run_fake_qdrant
from tests.fakes.slack_server import BOT_USER_ID, TEAM_ID, FakeSlack, run_fake_slack
from tests.servers import free_port, serve

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
KEY, LIMITED_KEY = "k-conversations", "k-limited"
SECRET = "s3cret"
LIMIT = 20  # requests a minute per key (the conversation test makes fewer)
LEASE = 2.0  # seconds: the jobs move within LEASE + LEASE / 3 of a kill
POLL = 0.5  # seconds between feed polls
Q_WHO = "من شارك في الاجتماع الأمني الذي استضافته القاهرة؟"
FOLLOW_UPS = ["ومتى عقد؟", "ومن مثل تركيا فيه؟", "وماذا بحثوا؟"]


class Feed:
    """An RSS feed that counts how often it is fetched."""

    def __init__(self) -> None:
        self.fetches: list[float] = []

    def app(self) -> Starlette:
        async def feed(request: Request) -> Response:
            self.fetches.append(time.monotonic())
            return Response('<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>',
                            media_type="application/rss+xml")

        return Starlette(routes=[Route("/feed.xml", feed)])

    def since(self, moment: float) -> int:
        return sum(1 for t in self.fetches if t >= moment)


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def client(self, key: str = KEY) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    def jobs(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/readyz", timeout=10).json()["database"]["jobs"])


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


def _start(workdir: Path, name: str, env: dict[str, str]) -> Process:
    port = free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sanad.cli", "serve", "--host", "127.0.0.1", "--port",
                                 str(port), "--data-dir", str(workdir / name)],
                                cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    p = Process(proc, f"http://127.0.0.1:{port}", log)

    def ready() -> bool:
        assert proc.poll() is None, f"{name} exited:\n{log.read_text()}"
        try:
            return httpx.get(f"{p.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    _wait_for(ready, f"{name} to be ready")
    return p


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, postgres_server: str) -> Iterator[dict[str, Any]]:
    from tests.postgres import new_database

    workdir = tmp_path_factory.mktemp("deployment")
    feed = Feed()
    with run_fake_qdrant() as qdrant_url, run_fake_slack() as (slack, slack_url), serve(feed.app()) as feed_url:
        # The vectors, indexed once (fully dense) into the Qdrant server both processes use.
        settings = Settings(data_dir=workdir / "indexer", qdrant=QdrantSettings(url=qdrant_url))
        engine = Sanad.open(settings)
        assert Indexer(engine.store, engine.encoder, engine.embedder, settings.index).index_paths([SEEDS]).added == 5
        engine.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANAD_")} | {
            "SANAD_QDRANT__URL": qdrant_url, "SANAD_DATABASE__URL": new_database(postgres_server),
            "SANAD_EMBED__CACHE_PATH": str(VECTOR_CACHE), "SANAD_API_KEYS": f"{KEY},{LIMITED_KEY}",
            "SANAD_SERVICE__RATE_LIMIT_PER_MINUTE": str(LIMIT), "SANAD_SERVICE__JOBS_LEASE_SECONDS": str(LEASE),
            "SANAD_FEEDS__URLS": f"{feed_url}/feed.xml", "SANAD_FEEDS__INTERVAL_SECONDS": str(POLL),
            "SANAD_SLACK__BOT_TOKEN": "xoxb-test", "SANAD_SLACK__SIGNING_SECRET": SECRET,
            "SANAD_SLACK__API_BASE_URL": slack_url, "PYTHONUNBUFFERED": "1",
        }
        processes = [_start(workdir, name, env) for name in ("a", "b")]
        try:
            yield {"processes": processes, "slack": slack, "feed": feed}
        finally:
            for p in processes:
                if p.proc.poll() is None:
                    p.proc.terminate()
                    try:
                        p.proc.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        p.proc.kill()
                        p.proc.wait()


def test_a_conversation_alternating_between_the_processes_keeps_its_thread(deployment: dict[str, Any]) -> None:
    a, b = deployment["processes"]
    with a.client() as ca, b.client() as cb:
        first = ca.post("/v1/chat", json={"question": Q_WHO}).json()
        session = first["session_id"]
        for i, question in enumerate(FOLLOW_UPS):
            r = (cb if i % 2 == 0 else ca).post("/v1/chat", json={"question": question, "session_id": session})
            assert r.status_code == 200, r.text
            assert r.json()["session_id"] == session and not r.json()["degraded"]
        assert "القاهرة" in (cb.get(f"/v1/sessions/{session}").json()["turns"][2]["rewritten_question"] or "")
        for c in (ca, cb):
            turns = c.get(f"/v1/sessions/{session}").json()["turns"]
            assert [t["content"] for t in turns if t["role"] == "user"] == [Q_WHO, *FOLLOW_UPS]


def test_a_slack_retry_landing_on_the_other_process_is_not_answered_twice(deployment: dict[str, Any]) -> None:
    a, b = deployment["processes"]
    slack: FakeSlack = deployment["slack"]
    ts = "1700000099.000100"
    event = {"type": "app_mention", "user": "U1", "text": f"<@{BOT_USER_ID}> {Q_WHO}", "ts": ts, "channel": "C9",
             "event_ts": ts}
    body = json.dumps({"token": "x", "team_id": TEAM_ID, "api_app_id": "A1", "type": "event_callback",
                       "event_id": "EvTwice", "event_time": int(time.time()), "event": event}).encode()

    def deliver(p: Process, retry: int) -> None:
        stamp = str(int(time.time()))
        digest = hmac.new(SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": stamp,
                   "X-Slack-Signature": f"v0={digest}"}
        if retry:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        assert httpx.post(f"{p.url}/slack/events", content=body, headers=headers, timeout=30).status_code == 200

    threads = [threading.Thread(target=deliver, args=(p, n)) for n, p in enumerate((a, b, a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def answers() -> list[dict[str, Any]]:
        return [args for args in slack.calls_of("chat.postMessage") if args.get("channel") == "C9"]

    _wait_for(lambda: bool(answers()), "the answer in Slack")
    time.sleep(1.0)  # room for a second answer, were one coming
    assert len(answers()) == 1


def test_two_processes_share_one_rate_limit(deployment: dict[str, Any]) -> None:
    a, b = deployment["processes"]
    with a.client(LIMITED_KEY) as ca, b.client(LIMITED_KEY) as cb:
        codes = [(ca if i % 2 else cb).get("/v1/documents").status_code for i in range(2 * LIMIT)]
    assert codes.count(200) == LIMIT and codes.count(429) == LIMIT


def test_one_process_polls_and_fills_and_the_other_takes_over_when_it_is_killed(
        deployment: dict[str, Any]) -> None:
    a, b = deployment["processes"]
    feed: Feed = deployment["feed"]
    leaders = [p for p in (a, b) if p.jobs()["this_process"]]
    assert len(leaders) == 1
    leader, other = leaders[0], (b if leaders[0] is a else a)
    assert other.jobs()["holder"] == leader.jobs()["process"]
    start = time.monotonic()
    time.sleep(10 * POLL)
    assert 5 <= feed.since(start) <= 14  # about 10 polls: one poller, not two
    leader.proc.kill()  # no shutdown: the lease runs out
    leader.proc.wait()
    took = _wait_for(lambda: other.jobs()["this_process"], "the other process to take the jobs", timeout=30)
    assert took <= LEASE + LEASE / 3 + 2.0
    resumed = time.monotonic()
    _wait_for(lambda: feed.since(resumed) >= 2, "the feed polled by the new holder", timeout=30)
