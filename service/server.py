"""Running the service: one uvicorn process (one worker) owning the store; ``sanad serve`` calls it.

:func:`uvicorn_config` holds the connection limits (tests run the same configuration):
headers must arrive within ``service.header_timeout`` seconds (uvicorn has no such
limit, so a slowloris client could hold a connection open for ever), a body within
``service.body_timeout`` (``BodyLimitMiddleware``: 408), an idle keep-alive connection
is closed after 5 s, and request headers are capped at 16 KiB. A connection closed while
the client is still sending (a 408 or 413 mid-upload) is closed gracefully: the answer
and a FIN go first, and what the client still sends is read and dropped for up to 2 s,
so the client reads the 408/413 instead of a connection reset.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from rag.engine import Sanad
from rag.settings import Settings
from rag.store import StoreError, StoreUnavailable
from service.app import create_app
from service.owner import public_url, remove_owner

log = logging.getLogger("sanad.service")

KEEP_ALIVE_SECONDS = 5
MAX_HEADER_BYTES = 16 * 1024  # uvicorn's own default, stated here
_TOO_SLOW = b"Request headers not received in time.\n"
_TOO_SLOW_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TOO_SLOW)).encode() + b"\r\n\r\n" + _TOO_SLOW
)


LINGER_SECONDS = 2.0


class _LingeringTransport:
    """The connection's transport, closed the graceful way (see the module docstring)."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedH11Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def close(self) -> None:
        if self._closing or self._transport.is_closing():
            return
        self._closing = True
        if self._protocol.stopping or not self._transport.can_write_eof():
            self._transport.close()
            return
        self._protocol.draining = True
        try:
            self._transport.write_eof()  # after what is still buffered: the client sees the answer, then EOF
            self._transport.resume_reading()
        except (OSError, RuntimeError):
            self._transport.close()
            return
        self._protocol.loop.call_later(LINGER_SECONDS, self._transport.close)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for each request's line and headers, and graceful closing.

    The deadline is armed when a connection opens, and again when the first bytes of a next request
    arrive on a kept-alive connection; it is cleared once the headers are complete. A connection still
    in the middle of (or not yet begun with) its headers at the deadline gets a 408 and is closed.
    """

    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self.draining = False  # closed on our side: what still arrives is dropped
        self.stopping = False  # server shutdown: close at once
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.draining:
            return
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            if self._header_timer is None:
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        self.stopping = True
        super().shutdown()

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        if self.conn.our_state is h11.IDLE:  # nothing sent on this request yet
            self.transport.write(_TOO_SLOW_RESPONSE)
        self.transport.close()


def uvicorn_config(app: Any, settings: Settings, host: str, port: int, **overrides: Any) -> uvicorn.Config:
    """The server configuration ``sanad serve`` runs with (one worker: it owns the store)."""
    protocol = type("SanadH11Protocol", (GuardedH11Protocol,),
                    {"header_timeout": settings.service.header_timeout})
    options: dict[str, Any] = {
        "host": host, "port": port, "workers": 1, "log_level": "info", "timeout_graceful_shutdown": 5,
        "http": protocol, "timeout_keep_alive": KEEP_ALIVE_SECONDS, "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the service until interrupted. Exits non-zero (with the reason on stderr) if it cannot start,
    e.g. another server already owns the data directory's store, or the store was built by other settings.

    A Qdrant server (``SANAD_QDRANT__URL``) that is down does not stop it: the service starts, says so
    on stderr, answers 503 with the reason (``/readyz`` too) and connects when the server is back."""
    settings = settings.model_copy(update={"service": settings.service.model_copy(update={"host": host, "port": port})})
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    engine: Sanad | None
    try:
        engine = Sanad.open(settings)
    except StoreUnavailable as exc:
        if not settings.qdrant.url:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        print(f"warning: {exc}\nwarning: starting anyway: /readyz and the API answer 503 until the Qdrant server "
              f"at {settings.qdrant.url} is reachable (retried every {settings.service.store_retry_seconds:g} s).",
              file=sys.stderr, flush=True)
        engine = None  # the app's lifespan keeps trying
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    try:
        if engine is not None:
            _hint_if_empty(engine)
        server = uvicorn.Server(uvicorn_config(create_app(settings, engine), settings, host, port))
        log.info("Sanad on %s (data: %s)", public_url(settings), settings.data_dir)
        server.run()
        if not server.started:
            print(f"error: the server did not start on {host}:{port} (see the log above)", file=sys.stderr)
            raise SystemExit(1)
    finally:
        if engine is not None:
            engine.close()
        remove_owner(settings)


def _hint_if_empty(engine: Sanad) -> None:
    try:
        empty = engine.store.count_chunks() == 0
    except Exception:  # the readiness probe reports store trouble
        return
    if not empty:
        return
    if Path("seeds").is_dir():
        log.warning("The index is empty. Index the sample articles with `sanad index seeds` (server stopped) "
                    "or upload them to POST /v1/documents while it runs.")
    else:
        log.warning("The index is empty: upload articles to POST /v1/documents.")
