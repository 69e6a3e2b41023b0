"""Pure ASGI middleware (streaming-safe): request metrics, API keys + rate limit, body size limit.

Order, outermost first: metrics (sees every status, including 401/413/429),
access (a client without a key is refused before its body is read), body limit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_response
from service.metrics import Metrics
from service.security import ApiKeys, RateLimiter, is_limited, is_public, retry_after


class MetricsMiddleware:
    """Counts and times every request by its route template (``/v1/sessions/{session_id}``, not the id)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, templates: Callable[[], Iterable[str]]) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates
        self._patterns: list[tuple[re.Pattern[str], str]] | None = None

    def _label(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if path:
            return str(path)
        # Answered before routing (401, 413, 429): name the route it was meant for.
        if self._patterns is None:
            self._patterns = [(compile_path(t)[0], t) for t in self.templates()]
        for pattern, template in self._patterns:
            if pattern.match(scope["path"]):
                return template
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe_request(scope["method"], self._label(scope), status, time.perf_counter() - t0)


class AccessMiddleware:
    """``Authorization: Bearer`` when keys are configured, then a token bucket per client."""

    def __init__(self, app: ASGIApp, keys: ApiKeys, limiter: RateLimiter) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        client: str | None
        if self.keys.enabled:
            client = self.keys.check(Headers(scope=scope).get("authorization"))
            if client is None:
                response = error_response(
                    401, "unauthorized", "A valid API key is required: send 'Authorization: Bearer <key>'.",
                    headers={"WWW-Authenticate": 'Bearer realm="sanad"'},
                )
                await response(scope, receive, send)
                return
        else:
            peer = scope.get("client")
            client = "ip:" + (peer[0] if peer else "unknown")
        if is_limited(scope["path"]):
            wait = self.limiter.take(client)
            if wait > 0:
                response = error_response(
                    429, "rate_limited", f"Too many requests; retry in {retry_after(wait)} s.",
                    headers={"Retry-After": retry_after(wait)},
                )
                await response(scope, receive, send)
                return
        scope.setdefault("state", {})["client"] = client
        await self.app(scope, receive, send)


class BodyTooLarge(StarletteHTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=413, detail="The request body is too large.")


class BodyLimitMiddleware:
    """413 from ``Content-Length`` up front, or while reading a body sent without one."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_bytes
            except ValueError:
                too_big = False
            if too_big:
                response = error_response(413, "body_too_large",
                                          f"The request body is larger than {self.max_bytes} bytes.")
                await response(scope, receive, send)
                return

        total = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except BodyTooLarge:
            if started:
                raise
            response = error_response(413, "body_too_large", f"The request body is larger than {self.max_bytes} bytes.")
            await response(scope, receive, send)
