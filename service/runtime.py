"""What the running service owns between start-up and shutdown, and how it gets it.

:class:`Runtime` opens the engine (unless one is given, which stays the caller's to
close), the conversation store under ``data_dir``, and for the embedded on-disk store
writes ``data_dir/sanad-server.json`` naming this process; it starts the retention task
that deletes old and surplus conversations (``service/retention.py``), and with
``SANAD_FEEDS__URLS`` the task that polls those feeds and indexes what is new (``index/feeds.py``).

The background jobs (retention, feed polling, the dense fill) run in one process at a time: the one holding the
``jobs`` lease in the shared PostgreSQL database (``service/coordination.py``). Every process tries to take or
renew it every third of ``service.jobs_lease_seconds``; when its holder dies, another takes the jobs over once the
lease has run out. With the SQLite default there is one process, and it runs them.

A Qdrant server (``qdrant.url``) that cannot be reached does not stop the start: the
runtime keeps ``store_error`` (``/readyz`` and the API answer 503 with it) and reconnects
every ``service.store_retry_seconds``; the service is ready once the server answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

import anyio

from index.feeds import FeedPoller
from index.readers import IndexSummary, Skipped, collection_limit
from rag.engine import Sanad
from rag.models import Article
from rag.settings import Settings
from rag.store import StoreUnavailable
from service.conversations import ConversationStore
from service.coordination import JOBS, Coordination, process_name
from service.database import Database, DatabaseUnavailable
from service.metrics import Metrics, count_embedder_failures
from service.owner import remove_owner, write_owner
from service.retention import Retention
from service.state import LockedClient, ServiceState, embedded_store

log = logging.getLogger("sanad.service")
SWEEP_EVERY = 60  # lease renewals between two sweeps of the rate limit's full buckets (15 s lease: every 5 min)


class Runtime:
    def __init__(self, settings: Settings, metrics: Metrics, engine: Sanad | None = None,
                 on_change: Callable[[Runtime], None] | None = None, database: Database | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.database = database or Database(settings.database.url, settings.data_dir)
        self._owns_database = database is None
        self.coordination: Coordination | None = None
        self.holder = process_name()  # this process, as the jobs' lease names it
        self.leading = False  # whether this process runs the background jobs now
        self._lease: asyncio.Task[None] | None = None
        self.state: ServiceState | None = None  # set once the store is usable
        self.store_error: str | None = None  # why it is not usable yet (a Qdrant server down at start-up)
        self.retention: Retention | None = None
        self._given = engine
        self._on_change = on_change or (lambda _: None)
        self._opened: list[Sanad] = []  # engines this runtime opened (and closes)
        self._conversations: ConversationStore | None = None
        self._owner_written = False
        self._stopping = asyncio.Event()
        self._retry: asyncio.Task[None] | None = None
        self._feeds: asyncio.Task[None] | None = None
        self._dense: asyncio.Task[None] | None = None
        self._dense_stop = threading.Event()
        self._dense_again = False
        self._feeds_scope: anyio.CancelScope | None = None

    async def start(self) -> None:
        """Open everything; with an unreachable Qdrant server, start anyway and reconnect in the background.

        An embedded store that cannot be opened (in use, built otherwise) raises: nothing can serve."""
        if self._given is not None:
            self._activate(self._given)
            return
        try:
            engine = await self._open()
        except StoreUnavailable as exc:
            if not self.settings.qdrant.url:
                raise
            # An orchestrated deployment may start Sanad before Qdrant: start, answer 503 with the reason, and
            # connect when it is up.
            self._set_error(str(exc))
            log.error("%s. Serving 503 until it is reachable; retrying every %g s.", exc,
                      self.settings.service.store_retry_seconds)
            self._retry = asyncio.create_task(self._reconnect())
            return
        self._opened.append(engine)
        self._activate(engine)

    async def _open(self) -> Sanad:
        """The engine, its encoder and reader loaded now rather than on the first question."""
        engine = await anyio.to_thread.run_sync(Sanad.open, self.settings)
        await anyio.to_thread.run_sync(engine.warm)
        return engine

    async def stop(self) -> None:
        self._stopping.set()
        if self._retry is not None:
            await self._retry
        if self._lease is not None:
            await self._lease
        await self._stop_jobs()  # before the engine they index into and the store they prune are closed
        if self.coordination is not None and self.database.shared:
            with contextlib.suppress(DatabaseUnavailable):  # handed over now, not when it runs out
                await anyio.to_thread.run_sync(self.coordination.release, JOBS, self.holder)
        self.state = None
        self._on_change(self)
        if self._owner_written:
            remove_owner(self.settings)
        if self._conversations is not None:
            self._conversations.close()
        if self._owns_database:
            self.database.close()
        for engine in self._opened:
            engine.close()

    def _set_error(self, error: str | None) -> None:
        self.store_error = error
        self._on_change(self)

    def _activate(self, engine: Sanad) -> None:
        settings = self.settings
        if not settings.qdrant.url and not isinstance(engine.store.client, LockedClient):
            engine.store.client = LockedClient(engine.store.client)  # type: ignore[assignment]
        count_embedder_failures(engine, self.metrics)  # the engine falls back to lexical retrieval quietly
        self._conversations = ConversationStore(self.database, settings.service.max_turns)
        self.coordination = Coordination(self.database) if self.database.shared else None
        if embedded_store(settings):
            write_owner(settings)
            self._owner_written = True
        loop = asyncio.get_running_loop()
        self.state = ServiceState(settings=settings, engine=engine, conversations=self._conversations,
                                  metrics=self.metrics, write_lock=threading.Lock(),
                                  # called from a worker thread (an upload being indexed)
                                  on_dense_pending=lambda: loop.call_soon_threadsafe(self._start_dense))
        # Old and surplus conversations are deleted in the background, never in an answer's way.
        self.retention = Retention(self._conversations, settings.service)
        self._set_error(None)
        if not self.database.shared:
            self._start_jobs()  # one process: its jobs, at once, as always
        else:
            if self._take_lease():
                self._start_jobs()
            self._lease = asyncio.create_task(self._hold_lease())

    # -- the background jobs, in the one process holding the lease -------------------------------------
    def _take_lease(self) -> bool:
        assert self.coordination is not None
        try:
            return self.coordination.acquire(JOBS, self.holder, self.settings.service.jobs_lease_seconds)
        except DatabaseUnavailable as exc:
            log.warning("The jobs' lease cannot be taken or renewed: %s", exc)
            return False

    def _start_jobs(self) -> None:
        if self.leading:
            return
        self.leading = True
        if self.database.shared:
            log.info("This process (%s) runs the background jobs: feeds, dense fill, retention", self.holder)
        if self.retention is not None and self._conversations is not None:
            if self.retention.task is not None or self.retention.passes:  # stopped once: a fresh one
                self.retention = Retention(self._conversations, self.settings.service)
                self._on_change(self)
            self.retention.start()
        self._dense_stop = threading.Event()
        self._start_feeds()
        self._start_dense()

    async def _stop_jobs(self) -> None:
        if not self.leading:
            return
        self.leading = False
        await self._stop_feeds()
        await self._stop_dense()
        if self.retention is not None:
            await self.retention.stop()

    async def _hold_lease(self) -> None:
        """Renew the lease while holding it; take it when its holder has gone; give the jobs up if it is lost."""
        ttl = self.settings.service.jobs_lease_seconds
        renewals = 0
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=ttl / 3)
                return
            held = await anyio.to_thread.run_sync(self._take_lease)
            if held and not self.leading:
                self._start_jobs()
            elif not held and self.leading:
                log.warning("This process no longer holds the jobs' lease: stopping its background jobs")
                await self._stop_jobs()
            if held:
                self._start_dense()  # chunks left pending by another process's upload
                renewals += 1
                if renewals % SWEEP_EVERY == 0:
                    await anyio.to_thread.run_sync(self._forget_full_buckets)

    def _forget_full_buckets(self) -> None:
        """The shared rate limit's buckets of clients that have gone quiet (a row per key or address otherwise
        stays for ever)."""
        per_minute = self.settings.service.rate_limit_per_minute
        if self.coordination is None or per_minute <= 0:
            return
        with contextlib.suppress(DatabaseUnavailable):
            self.coordination.forget_full_buckets(float(per_minute), per_minute / 60.0)

    def _start_dense(self) -> None:
        """Fill in the dense vectors a bulk ``sanad index`` left pending, in the background, one batch at a
        time under the write lock, newest articles first. Meanwhile a chunk still waiting is ranked by its lexical
        score beside the hybrid-ranked ones, so answers do not wait for the encoder."""
        state = self.state
        if state is None or state.engine.embedder is None or not self.settings.service.fill_dense \
                or not self.leading:
            return
        if self._dense is not None and not self._dense.done():
            self._dense_again = True  # more arrived while filling: one more pass when this one ends
            return
        stop = self._dense_stop

        def fill() -> int:
            if state.engine.store.count_dense_pending() == 0:
                return 0
            log.info("Filling in dense vectors in the background (newest articles first; chunks waiting for theirs "
                     "are ranked lexically meanwhile)")
            done = state.indexer.fill_dense(batch=4, stop=stop, write_lock=state.write_lock)
            log.info("Dense vectors: %d chunks filled%s", done, " (stopped)" if stop.is_set() else "")
            return done

        async def run() -> None:
            self._dense_again = True
            while self._dense_again and not stop.is_set():
                self._dense_again = False
                try:
                    await anyio.to_thread.run_sync(fill)
                except Exception:  # the service answers lexically on; the next start tries again
                    log.exception("Filling in dense vectors failed")
                    return

        self._dense = asyncio.create_task(run())

    async def _stop_dense(self) -> None:
        task, self._dense = self._dense, None
        if task is not None:
            self._dense_stop.set()  # after the batch in progress
            await task

    def _start_feeds(self) -> None:
        feeds, state = self.settings.feeds, self.state
        if not feeds.url_list or state is None:
            return

        loop = asyncio.get_running_loop()

        def index(items: list[Article | Skipped]) -> IndexSummary:
            with state.write_lock:  # one writer at a time, as for uploads
                # A poll with a few new items embeds them now (answerable in both languages on the next
                # question); a large one is searchable at once and filled in the background, newest first.
                defer = state.indexer.defer_arrivals(items)
                summary = state.indexer.index_articles(items, defer_dense=True if defer else None)
            if defer:
                loop.call_soon_threadsafe(self._start_dense)
            return summary

        poller = FeedPoller(feeds.url_list, index, timeout=feeds.timeout,
                            max_bytes=collection_limit(self.settings.index.max_file_bytes))
        self._feeds = asyncio.create_task(self._poll_feeds(poller))

    async def _poll_feeds(self, poller: FeedPoller) -> None:
        """Poll the feeds now and then every interval until stopped; a failing feed is logged and polled
        again next time. Runs in a cancel scope: :meth:`stop` cancels it without abandoning a worker
        thread that is indexing (anyio waits for it)."""
        interval = self.settings.feeds.interval_seconds
        with anyio.CancelScope() as self._feeds_scope:
            while not self._stopping.is_set():
                try:
                    for result in await poller.poll_once():
                        (log.warning if result.error else log.info)("%s", result.describe())
                except Exception:
                    log.exception("Polling the feeds failed; trying again in %g s", interval)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=interval)

    async def _stop_feeds(self) -> None:
        task, self._feeds = self._feeds, None
        if task is None:
            return
        if self._feeds_scope is not None:
            self._feeds_scope.cancel()
        else:  # not started yet: nothing runs in a thread
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _reconnect(self) -> None:
        """Keep trying a Qdrant server that was down at start-up; serve once it answers."""
        pause = self.settings.service.store_retry_seconds
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=pause)
                return
            try:
                engine = await self._open()
            except Exception as exc:  # still down, or a transient failure while it comes up
                if str(exc) != self.store_error:
                    log.warning("Qdrant is still not usable (retrying every %g s): %s", pause, exc)
                self._set_error(str(exc) or type(exc).__name__)
                continue
            self._opened.append(engine)
            if self._stopping.is_set():
                return
            try:
                self._activate(engine)
            except Exception as exc:  # e.g. the conversation store cannot be opened: say so in /readyz
                log.exception("Qdrant is reachable, but the service could not start")
                self._set_error(f"the service could not start: {exc}")
                return
            log.info("Qdrant at %s is reachable: the service is ready", self.settings.qdrant.url)
            return
