"""JSON request bodies must be text: a lone surrogate escape (``"\\ud800"``) is valid JSON but no
character, so it cannot be encoded, stored or answered. It is refused as invalid JSON (400).

Routes that take a JSON body use :class:`StrictJSONRoute` (FastAPI parses the body through
:meth:`StrictJSONRequest.json`); routes that parse a body themselves call :func:`loads`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

# A \u escape of a surrogate code point; pairs (high then low) are fine, a lone one is not.
_SURROGATE = re.compile(rb"\\u[dD]([89abAB]|[c-fC-F])[0-9a-fA-F]{2}")


def _lone_surrogate_at(body: bytes) -> int | None:
    """Offset of the first lone surrogate escape, if any (a cheap scan; json.loads has already run)."""
    pending_high: int | None = None
    for m in _SURROGATE.finditer(body):
        high = m.group(1) in b"89abAB"
        if pending_high is not None:
            if not high and m.start() == pending_high + 6 and body[pending_high - 1 : pending_high] != b"\\":
                pending_high = None
                continue
            return pending_high
        if high:
            pending_high = m.start()
        elif m.start() == 0 or body[m.start() - 1 : m.start()] != b"\\":  # not an escaped backslash
            return m.start()
    return pending_high


def loads(body: bytes | str) -> Any:
    """``json.loads``, raising :class:`json.JSONDecodeError` for a string that is not valid Unicode."""
    obj = json.loads(body)
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if _SURROGATE.search(raw):
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            pos = _lone_surrogate_at(raw) or 0
            raise json.JSONDecodeError("lone surrogate escape (not a Unicode character)",
                                       raw.decode("utf-8", "replace"), pos) from None
    return obj


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
