"""RSS feeds polled over HTTP: conditional GET, only what changed is indexed, failures reported and retried;
``sanad serve`` polling its configured feeds, and ``sanad index URL``."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from typer.testing import CliRunner

from index.feeds import FeedPoller
from index.ingest import Indexer
from rag.engine import Sanad
from rag.settings import FeedSettings, Settings
from sanad.cli import app as cli
from service.app import create_app
from tests.servers import free_port, serve

STORIES = [
    ("https://wire.example/story/1", "اجتماع في القاهرة", "<p>عقد الوسطاء اجتماعا في القاهرة لبحث التهدئة.</p>"),
    ("https://wire.example/story/2", "موجة حر", "<p>تشمل موجة الحر المنطقة الشرقية ثلاثة أيام.</p>"),
    ("https://wire.example/story/3", "افتتاح معرض الكتاب", "<p>افتتح معرض الكتاب في الرياض بمشاركة ألف دار نشر.</p>"),
]
NEW_STORY = ("https://wire.example/story/4", "ميناء جديد", "<p>افتتح ميناء جديد للحاويات على البحر الأحمر.</p>")


def doc_id(guid: str) -> str:
    """What an item's id is: the GUID's host and a hash of the GUID (the same on every poll)."""
    return f"wire.example-{hashlib.sha1(guid.encode()).hexdigest()[:16]}"


@dataclass
class FakeFeed:
    """An RSS feed with an ETag (or only Last-Modified) that answers 304 to a matching conditional GET."""

    stories: list[tuple[str, str, str]] = field(default_factory=lambda: list(STORIES))
    version: int = 1
    etag: bool = True
    status: int = 200  # anything else: the feed is down
    slow_seconds: float = 2.0  # how long /slow.xml takes to answer
    requests: list[dict[str, str]] = field(default_factory=list)

    def change(self, story: tuple[str, str, str]) -> None:
        self.stories.append(story)
        self.version += 1

    def rss(self) -> str:
        items = "".join(f"<item><title>{title}</title><link>{guid}</link><guid>{guid}</guid>"
                        "<pubDate>Wed, 22 Jul 2015 09:00:00 +0300</pubDate>"
                        f"<description><![CDATA[{html}]]></description></item>" for guid, title, html in self.stories)
        return f'<?xml version="1.0"?><rss version="2.0"><channel><title>وكالة المثال</title>{items}</channel></rss>'

    def app(self) -> Starlette:
        async def feed(request: Request) -> Response:
            self.requests.append(dict(request.headers))
            if self.status != 200:
                return Response("unavailable", status_code=self.status)
            validator = ("etag", f'"v{self.version}"') if self.etag else \
                ("last-modified", f"Wed, 22 Jul 2015 0{self.version}:00:00 GMT")
            asked = request.headers.get("if-none-match" if self.etag else "if-modified-since")
            if asked == validator[1]:
                return Response(status_code=304, headers=dict([validator]))
            return Response(self.rss(), media_type="application/rss+xml", headers=dict([validator]))

        async def error_page(request: Request) -> Response:
            return Response("<html><body><h1>502 Bad Gateway</h1></body></html>", media_type="text/html")

        async def slow(request: Request) -> Response:
            self.requests.append(dict(request.headers))
            await asyncio.sleep(self.slow_seconds)
            return Response(self.rss(), media_type="application/rss+xml")

        return Starlette(routes=[Route("/feed.xml", feed), Route("/error.xml", error_page), Route("/slow.xml", slow)])


def indexer_for(engine: Sanad) -> Callable[[list[Any]], Any]:
    indexer = Indexer(engine.store, engine.encoder, engine.embedder, engine.settings.index)
    return indexer.index_articles


def stored_ids(engine: Sanad) -> list[str]:
    return sorted(d["doc_id"] for d in engine.store.list_documents())


def test_a_polled_feed_is_indexed_then_304_costs_nothing_then_a_new_item_is_added(engine: Sanad) -> None:
    feed = FakeFeed()
    with serve(feed.app()) as base:
        poller = FeedPoller([f"{base}/feed.xml"], indexer_for(engine), timeout=5)
        (first,) = asyncio.run(poller.poll_once())
        assert (first.status, first.error) == (200, None) and first.summary is not None
        assert (first.summary.added, first.summary.skipped) == (3, [])
        assert stored_ids(engine) == sorted(doc_id(guid) for guid, _, _ in STORIES)
        assert "3 items, 3 added, 0 updated, 0 unchanged, 0 skipped" in first.describe()

        (second,) = asyncio.run(poller.poll_once())
        assert second.not_modified and second.summary is None  # nothing parsed, nothing indexed
        assert feed.requests[-1]["if-none-match"] == '"v1"'
        assert "not modified" in second.describe()

        feed.change(NEW_STORY)
        (third,) = asyncio.run(poller.poll_once())
        assert third.summary is not None
        assert (third.summary.added, third.summary.unchanged, third.summary.updated) == (1, 3, 0)
        assert doc_id(NEW_STORY[0]) in stored_ids(engine)
        assert len(feed.requests) == 3


def test_a_feed_with_only_last_modified_is_asked_if_modified_since(engine: Sanad) -> None:
    feed = FakeFeed(etag=False)
    with serve(feed.app()) as base:
        poller = FeedPoller([f"{base}/feed.xml"], indexer_for(engine), timeout=5)
        first, second = asyncio.run(poller.poll_once()), asyncio.run(poller.poll_once())
    assert first[0].summary is not None and first[0].summary.added == 3
    assert second[0].not_modified
    assert feed.requests[-1]["if-modified-since"] == "Wed, 22 Jul 2015 01:00:00 GMT"
    assert "if-none-match" not in feed.requests[-1]


def test_a_failing_feed_is_reported_the_others_are_indexed_and_it_is_polled_again(engine: Sanad) -> None:
    down, good = FakeFeed(status=503), FakeFeed(stories=[NEW_STORY])
    with serve(down.app()) as down_base, serve(good.app()) as good_base:
        unreachable = f"http://127.0.0.1:{free_port()}/feed.xml"
        urls = [f"{down_base}/feed.xml", f"{down_base}/error.xml", f"{down_base}/slow.xml", unreachable,
                f"{good_base}/feed.xml"]
        poller = FeedPoller(urls, indexer_for(engine), timeout=0.5)
        results = asyncio.run(poller.poll_once())
        errors = [r.error for r in results]
        assert errors[:3] == ["HTTP 503", "not an RSS or Atom feed (the document is <html>)", "timed out after 0.5 s"]
        assert errors[3] is not None and errors[3].startswith("cannot connect")
        assert errors[4] is None and stored_ids(engine) == [doc_id(NEW_STORY[0])]
        assert all("trying again next interval" in r.describe() for r in results[:4])

        down.status = 200  # back up: the next poll reads it whole (a failure kept no validators)
        poller.urls = [f"{down_base}/feed.xml"]
        (again,) = asyncio.run(poller.poll_once())
        assert again.summary is not None and again.summary.added == 3
        assert "if-none-match" not in down.requests[-1]


def wait_for(check: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sanad_serve_polls_its_feeds_and_indexes_new_items(tmp_path: Path, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="sanad.service")
    feed = FakeFeed()
    with serve(feed.app()) as base:
        url = f"{base}/feed.xml"
        settings = Settings.in_memory(tmp_path, feeds=FeedSettings(urls=url, interval_seconds=0.2))
        with TestClient(create_app(settings)) as client:

            def documents() -> list[str]:
                r = client.get("/v1/documents")
                return sorted(d["doc_id"] for d in r.json()["documents"]) if r.status_code == 200 else []

            wait_for(lambda: len(documents()) == 3, "the feed's items")
            assert documents() == sorted(doc_id(guid) for guid, _, _ in STORIES)
            wait_for(lambda: any(r.get("if-none-match") == '"v1"' for r in feed.requests), "a conditional poll")
            feed.change(NEW_STORY)
            wait_for(lambda: doc_id(NEW_STORY[0]) in documents(), "the new item")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"feed {url}")]
    assert f"feed {url}: 3 items, 3 added, 0 updated, 0 unchanged, 0 skipped" in lines[0]
    assert any("not modified" in line for line in lines)
    assert any("4 items, 1 added, 0 updated, 3 unchanged" in line for line in lines)


def test_stopping_the_service_does_not_wait_for_a_slow_feed(tmp_path: Path) -> None:
    feed = FakeFeed(slow_seconds=30)
    with serve(feed.app()) as base:
        settings = Settings.in_memory(tmp_path, feeds=FeedSettings(urls=f"{base}/slow.xml", timeout=60))
        with TestClient(create_app(settings)):
            wait_for(lambda: len(feed.requests) == 1, "the poll to start")
            t0 = time.monotonic()
        assert time.monotonic() - t0 < 5  # the request is cancelled, not waited for


def test_sanad_index_reads_a_feed_url_and_says_why_one_cannot_be_read(tmp_path: Path) -> None:
    feed = FakeFeed()
    runner = CliRunner()
    data = str(tmp_path / "data")
    with serve(feed.app()) as base:
        first = runner.invoke(cli, ["index", f"{base}/feed.xml", "--data-dir", data])
        assert first.exit_code == 0, first.stderr
        assert "3 documents (3 added, 0 updated, 0 unchanged)" in " ".join(first.stdout.split())
        again = runner.invoke(cli, ["index", f"{base}/feed.xml", "--data-dir", data])
        assert "3 documents (0 added, 0 updated, 3 unchanged)" in " ".join(again.stdout.split())
        failed = runner.invoke(cli, ["index", f"{base}/error.xml", "--data-dir", data])
    assert failed.exit_code == 1
    assert "error.xml: not an RSS or Atom feed" in " ".join(failed.stderr.split())
