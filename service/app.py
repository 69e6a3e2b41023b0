"""The FastAPI application, built from explicit settings (nothing global at import time).

    app = create_app(Settings.in_memory(tmp_path))          # tests
    app = create_app(settings, engine)                       # an engine opened by the caller

The lifespan opens the engine (unless one is given, which stays the caller's
to close), the conversation store under ``data_dir``, and for the embedded
on-disk store writes ``data_dir/sanad-server.json`` naming this process, and
starts the retention task that deletes old and surplus conversations
(``service/retention.py``; ``app.state.retention``).
A Qdrant server (``qdrant.url``) that cannot be reached does not stop the start:
``/readyz`` and the API answer 503 with the reason while it is retried every
``service.store_retry_seconds``, and the service is ready once it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from rag.engine import Sanad
from rag.settings import Settings
from rag.store import StoreUnavailable
from service import errors
from service.conversations import ConversationStore
from service.metrics import Metrics
from service.middleware import AccessMiddleware, BodyLimitMiddleware, MetricsMiddleware
from service.owner import remove_owner, write_owner
from service.retention import Retention
from service.routers import chat, documents, health, openai_compat, search, sessions
from service.security import DOCS_STATIC, ApiKeys, ClientAddress, RateLimiter
from service.slack import mount_slack
from service.state import LockedClient, ServiceState, embedded_store

log = logging.getLogger("sanad.service")

STATIC_DIR = Path(__file__).parent / "static"

DESCRIPTION = """Cited answers over Arabic news articles, in Arabic or English.

* `POST /v1/chat` answers in a conversation (`session_id`), streamed as server-sent events with `stream: true`.
* `POST /v1/chat/completions` speaks the OpenAI protocol (citations in `citations` and as `[n]`).
* `/v1/documents` indexes, lists and removes articles while the service runs; `POST /v1/search` ranks passages.

When `SANAD_API_KEYS` is set, send `Authorization: Bearer <key>` (health probes, the page and these docs are open).
Errors are `{"error": {"code": ..., "message": ...}}`.
"""

TAGS = [
    {"name": "chat", "description": "Questions and conversations (أسئلة ومحادثات)."},
    {"name": "openai-compatible", "description": "For the openai client and OpenAI-speaking chat front ends."},
    {"name": "sessions", "description": "Stored conversations."},
    {"name": "documents", "description": "The indexed articles (المقالات)."},
    {"name": "search", "description": "Ranked passages without an answer."},
    {"name": "health", "description": "Probes and metrics."},
]

_NO_PAGE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>Sanad</title>
<body><h1>Sanad · سند</h1><p>The chat page is not installed. The API is documented at <a href="/docs">/docs</a>.</p>
</body></html>"""


def create_app(settings: Settings, engine: Sanad | None = None) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        conversations: ConversationStore | None = None
        retention: Retention | None = None
        opened: list[Sanad] = []  # engines this lifespan opened (and closes)
        owner_written = False
        stopping = asyncio.Event()

        def activate(eng: Sanad) -> None:
            nonlocal conversations, retention, owner_written
            if not settings.qdrant.url and not isinstance(eng.store.client, LockedClient):
                eng.store.client = LockedClient(eng.store.client)  # type: ignore[assignment]
            conversations = ConversationStore.open(settings.data_dir, settings.service.max_turns)
            if embedded_store(settings):
                write_owner(settings)
                owner_written = True
            app.state.sanad = ServiceState(settings=settings, engine=eng, conversations=conversations,
                                           metrics=metrics, write_lock=threading.Lock())
            app.state.store_error = None
            # Old and surplus conversations are deleted in the background, never in an answer's way.
            retention = app.state.retention = Retention(conversations, settings.service)
            retention.start()

        async def connect_later() -> None:
            """Keep trying a Qdrant server that was down at start-up; serve once it answers."""
            pause = settings.service.store_retry_seconds
            while not stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=pause)
                    return
                try:
                    eng = await anyio.to_thread.run_sync(Sanad.open, settings)
                except Exception as exc:  # still down, or a transient failure while it comes up
                    if str(exc) != app.state.store_error:
                        log.warning("Qdrant is still not usable (retrying every %g s): %s", pause, exc)
                    app.state.store_error = str(exc) or type(exc).__name__
                    continue
                opened.append(eng)
                if stopping.is_set():
                    return
                try:
                    activate(eng)
                except Exception as exc:  # e.g. the conversation store cannot be opened: say so in /readyz
                    log.exception("Qdrant is reachable, but the service could not start")
                    app.state.store_error = f"the service could not start: {exc}"
                    return
                log.info("Qdrant at %s is reachable: the service is ready", settings.qdrant.url)
                return

        retry: asyncio.Task[None] | None = None
        try:
            if engine is not None:
                activate(engine)
            else:
                try:
                    eng = await run_in_threadpool(Sanad.open, settings)
                except StoreUnavailable as exc:
                    if not settings.qdrant.url:
                        raise
                    # An orchestrated deployment may start Sanad before Qdrant: start, answer 503 with the
                    # reason (readyz too), and connect when it is up.
                    app.state.store_error = str(exc)
                    log.error("%s. Serving 503 until it is reachable; retrying every %g s.", exc,
                              settings.service.store_retry_seconds)
                    retry = asyncio.create_task(connect_later())
                else:
                    opened.append(eng)
                    activate(eng)
            yield
        finally:
            stopping.set()
            if retry is not None:
                await retry
            app.state.sanad = None
            if retention is not None:
                await retention.stop()  # before the store it prunes is closed
            if owner_written:
                remove_owner(settings)
            if conversations is not None:
                conversations.close()
            for eng in opened:
                eng.close()

    # /docs and /redoc with Swagger UI and ReDoc served from the fastapi-offline package (MIT), not a CDN:
    # Sanad runs with no internet, and so must its API documentation.
    app = FastAPIOffline(
        title="Sanad · سند",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        static_url=DOCS_STATIC,
        redoc_url=None,  # served below: ReDoc's footer logo would still come from cdn.redoc.ly
    )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{DOCS_STATIC}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_STATIC}/favicon.png", with_google_fonts=False)
        # Nothing from another host: the browser is told not to fetch ReDoc's remote logo at all.
        page.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline' blob:; worker-src 'self' blob:"
        )
        return page
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.sanad = None
    app.state.retention = None  # a Retention once the conversation store is open
    app.state.store_error = None  # why the store is not usable yet (a Qdrant server down at start-up)

    errors.install(app)
    for module in (chat, openai_compat, sessions, documents, search, health):
        app.include_router(module.router)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        index = STATIC_DIR / "index.html"
        if index.is_file():
            return FileResponse(index, media_type="text/html; charset=utf-8")
        return HTMLResponse(_NO_PAGE)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # The Slack bot, when configured, in the same process (it answers through app.state.sanad).
    mount_slack(app, settings, None, None)

    # Added innermost first: metrics wraps access wraps the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.service.max_body_bytes,
                       timeout=settings.service.body_timeout)
    app.add_middleware(AccessMiddleware, keys=ApiKeys(settings.api_key_set),
                       limiter=RateLimiter(settings.service.rate_limit_per_minute),
                       by_ip=settings.service.rate_limit_by_ip,
                       addresses=ClientAddress(settings.service.trusted_proxies))
    app.add_middleware(MetricsMiddleware, metrics=metrics, templates=lambda: list(app.openapi()["paths"]))
    return app
