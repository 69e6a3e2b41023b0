"""The FastAPI application, built from explicit settings (nothing global at import time).

    app = create_app(Settings.in_memory(tmp_path))          # tests
    app = create_app(settings, engine)                       # an engine opened by the caller

The lifespan starts and stops a :class:`service.runtime.Runtime` (``app.state.runtime``):
the engine, the conversation store, the owner file and the retention task, and the
reconnection to a Qdrant server that was down at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from rag.engine import Sanad
from rag.settings import Settings
from service import errors
from service.coordination import SharedRateLimiter
from service.database import Database
from service.metrics import Metrics
from service.middleware import AccessMiddleware, BodyLimitMiddleware, MetricsMiddleware
from service.routers import chat, documents, health, openai_compat, search, sessions
from service.runtime import Runtime
from service.security import DOCS_STATIC, ApiKeys, ClientAddress, RateLimiter
from service.slack import mount_slack

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

    def publish(runtime: Runtime) -> None:
        """What the routes read (``service.deps``): the state once usable, else why not."""
        app.state.sanad = runtime.state
        app.state.store_error = runtime.store_error
        app.state.retention = runtime.retention

    # The service's own state: SQLite files under the data folder, or one PostgreSQL database shared by every
    # process (conversations, Slack, the rate limit, the jobs' lease). Connections open at first use.
    database = Database(settings.database.url, settings.data_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = app.state.runtime = Runtime(settings, metrics, engine, on_change=publish, database=database)
        try:
            await runtime.start()
            yield
        finally:
            await runtime.stop()
            database.close()

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
    app.state.database = database
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
                       limiter=(SharedRateLimiter(database, settings.service.rate_limit_per_minute) if database.shared
                                else RateLimiter(settings.service.rate_limit_per_minute)),
                       by_ip=settings.service.rate_limit_by_ip,
                       addresses=ClientAddress(settings.service.trusted_proxies))
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: app.routes)
    return app
