"""Pure ASGI middleware (streaming-safe): request metrics, API keys + rate limit, body size and time limits.

Order, outermost first: metrics (sees every status, including 401/408/413/429),
access (a client without a key is refused before its body is read), body limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from fastapi.routing import iter_route_contexts
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_response
from service.metrics import Metrics
from service.security import ApiKeys, ClientAddress, Limiter, is_limited, is_public, retry_after


class MetricsMiddleware:
    """Counts and times every request by its route template (``/v1/sessions/{session_id}``, not the id).

    The request is matched against the app's own routes (``routes``, e.g. ``lambda: app.routes``), so every
    served route has its template: the API, ``/docs``, ``/openapi.json``, ``/`` and mounts
    (``/static/{path}``), also when answered before routing (401, 413, 429). A 405 is named after the route
    it was meant for; only paths no route serves are ``unmatched`` (never the raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self._templates: list[tuple[Any, str]] | None = None

    def _label(self, scope: Scope) -> str:
        if self._templates is None:
            # FastAPI's included routers flattened into their routes (with their prefixes).
            self._templates = [(rc, _template(rc)) for rc in iter_route_contexts(self.routes())]
        partial = None
        for route, template in self._templates:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return template
            if match is Match.PARTIAL and partial is None:
                partial = template
        return partial or "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Routing rewrites the scope (a mount moves its prefix into root_path): match on the request as it came.
        request = {k: scope[k] for k in ("type", "path", "root_path", "method", "headers") if k in scope}
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
            self.metrics.observe_request(scope["method"], self._label(request), status, time.perf_counter() - t0)


def _template(route: Any) -> str:
    if isinstance(route.original_route, Mount):
        return f"{route.path}/{{path}}"  # the mounted app's own paths are not labelled
    return str(route.path_format or route.path)


class AccessMiddleware:
    """``Authorization: Bearer`` when keys are configured, then a token bucket per client."""

    def __init__(self, app: ASGIApp, keys: ApiKeys, limiter: Limiter, by_ip: bool = False,
                 addresses: ClientAddress | None = None) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.by_ip = by_ip
        self.addresses = addresses or ClientAddress("")

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
            client = "ip:" + self.addresses.of(peer[0] if peer else None, Headers(scope=scope).get("x-forwarded-for"))
        # Keyed by API key; without keys, per address only when configured (one proxy = one address for all).
        if is_limited(scope["path"]) and (self.keys.enabled or self.by_ip):
            # Counted in the shared database (several processes): a round trip, off the event loop.
            wait = (await anyio.to_thread.run_sync(self.limiter.take, client) if self.limiter.blocking
                    else self.limiter.take(client))
            if wait > 0:
                response = error_response(
                    429, "rate_limited", f"Too many requests; retry in {retry_after(wait)} s.",
                    headers={"Retry-After": retry_after(wait)},
                )
                await response(scope, receive, send)
                return
        scope.setdefault("state", {})["client"] = client
        await self.app(scope, receive, send)


# The client may still be sending: the connection is closed after the error instead of draining the rest.
_CLOSE = {"Connection": "close"}


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, headers=_CLOSE,
                         detail=f"The request body is larger than {max_bytes} bytes.")


class BodyTooSlow(StarletteHTTPException):
    def __init__(self, timeout: float) -> None:
        super().__init__(status_code=408, headers=_CLOSE,
                         detail=f"The request body did not arrive within {timeout:g} s; send it in one go.")


class BodyLimitMiddleware:
    """413 from ``Content-Length`` up front, or while reading a body sent without one; 408 when the whole
    body has not arrived ``timeout`` seconds after the request's headers (a slowloris-style trickle)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float = math.inf) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    def _too_large(self) -> Response:
        return error_response(413, "body_too_large", BodyTooLarge(self.max_bytes).detail, headers=_CLOSE)

    def _too_slow(self) -> Response:
        return error_response(408, "request_timeout", BodyTooSlow(self.timeout).detail, headers=_CLOSE)

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
                await self._too_large()(scope, receive, send)
                return

        total = 0
        started = False
        body_done = False
        deadline = anyio.current_time() + self.timeout

        async def limited_receive() -> Message:
            nonlocal total, body_done
            if body_done or started:
                # The body is in (or the answer is under way): later receives only wait for a disconnect.
                return await receive()
            try:
                with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlow(self.timeout) from None
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except (BodyTooLarge, BodyTooSlow) as exc:
            if started:
                raise
            response = self._too_large() if isinstance(exc, BodyTooLarge) else self._too_slow()
            await response(scope, receive, send)
