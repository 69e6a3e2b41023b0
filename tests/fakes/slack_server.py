"""A small, real Slack Web API for tests, served on 127.0.0.1.

Usage::

    with run_fake_slack() as (fake, base_url):          # base_url: http://127.0.0.1:PORT/api/
        client = AsyncWebClient(token="xoxb-test", base_url=base_url)
        fake.fail_next("chat.postMessage", status=429, times=1)   # Retry-After: 1
        ...
        assert fake.calls_of("chat.postMessage")[0]["thread_ts"] == "1700000000.000100"

Every call is recorded in ``fake.calls`` as ``{"method", "args", "headers"}``;
``args`` merges query, form and JSON arguments, with JSON-encoded form values
(``blocks``) decoded. ``fake.response_url(name)`` is a URL for the
``response_url`` of a slash command or a button click; posts to it are recorded
as method ``"response_url"``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from tests.servers import ThreadedServer

BOT_USER_ID = "UBOT0SANAD"
BOT_ID = "BBOT0SANAD"
TEAM_ID = "T0TEAM"

IMPLEMENTED = ("auth.test", "chat.postMessage", "chat.update", "chat.postEphemeral", "chat.delete",
               "reactions.add", "reactions.remove")


class FakeSlack:
    """Recorded calls and scripted failures; attributes are settable by tests."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        #: What the channels now show: (channel, ts) -> message, in posting order (updates and deletes applied).
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.base_url = ""
        self._failures: dict[str, list[tuple[int, int | None]]] = {}
        self._ts = itertools.count(1)
        self._lock = threading.Lock()

    # -- scripting ---------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.messages.clear()
            self._failures.clear()

    def fail_next(self, method: str, status: int = 429, times: int = 1, retry_after: int | None = 1) -> None:
        """The next ``times`` calls of ``method`` answer ``status`` (429 carries ``Retry-After``)."""
        with self._lock:
            self._failures.setdefault(method, []).extend([(status, retry_after if status == 429 else None)] * times)

    def response_url(self, name: str = "r") -> str:
        return f"{self.base_url.removesuffix('/api/')}/response/{name}"

    # -- reading -----------------------------------------------------------------------------
    def calls_of(self, method: str) -> list[dict[str, Any]]:
        """The arguments of every call of ``method``, in order."""
        with self._lock:
            return [c["args"] for c in self.calls if c["method"] == method]

    def shown(self) -> list[dict[str, Any]]:
        """The messages the bot posted as users now see them (after chat.update / chat.delete)."""
        with self._lock:
            return [dict(m) for m in self.messages.values()]

    def methods(self) -> list[str]:
        with self._lock:
            return [c["method"] for c in self.calls]

    def wait_for(self, predicate: Callable[[FakeSlack], bool], timeout: float = 10.0) -> None:
        """Poll until ``predicate(self)`` holds; AssertionError with the calls seen otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.02)
        raise AssertionError(f"condition not met within {timeout} s; calls: {self.methods()}")

    # -- internals -----------------------------------------------------------------------------
    def _record(self, method: str, args: dict[str, Any], headers: dict[str, str]) -> tuple[int, int | None] | None:
        with self._lock:
            self.calls.append({"method": method, "args": args, "headers": headers})
            queue = self._failures.get(method)
            if queue:
                return queue.pop(0)
        return None

    def next_ts(self) -> str:
        return f"1800000000.{next(self._ts):06d}"


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


async def _arguments(request: Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query_params)
    ctype = request.headers.get("content-type", "")
    body = await request.body()
    if ctype.startswith("application/json") and body:
        args.update(json.loads(body))
    elif body:
        form = await request.form()
        args.update({k: _decode(v) for k, v in form.items() if isinstance(v, str)})
    return args


def create_app(fake: FakeSlack) -> FastAPI:
    app = FastAPI()

    @app.post("/response/{name}")
    async def response_url(name: str, request: Request) -> Response:
        args = await _arguments(request)
        args["_url_name"] = name
        fake._record("response_url", args, dict(request.headers))
        return PlainTextResponse("ok")

    @app.post("/api/{method}")
    async def web_api(method: str, request: Request) -> Response:
        args = await _arguments(request)
        failure = fake._record(method, args, dict(request.headers))
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            body = {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"}
            return JSONResponse(body, status_code=status, headers=headers)
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer xox"):
            return JSONResponse({"ok": False, "error": "not_authed"})
        if method == "auth.test":
            return JSONResponse({"ok": True, "url": "https://fake.slack.test/", "team": "Fake", "user": "sanad",
                                 "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID})
        if method in ("chat.postMessage", "chat.update"):
            channel = str(args.get("channel"))
            ts = str(args.get("ts")) if method == "chat.update" else fake.next_ts()
            with fake._lock:
                old = fake.messages.get((channel, ts))
                if method == "chat.update" and old is None:
                    return JSONResponse({"ok": False, "error": "message_not_found"})
                message = {"type": "message", "channel": channel, "text": args.get("text", ""),
                           "blocks": args.get("blocks", []), "bot_id": BOT_ID, "user": BOT_USER_ID, "ts": ts,
                           "thread_ts": args.get("thread_ts") or (old or {}).get("thread_ts")}
                fake.messages[(channel, ts)] = message
            return JSONResponse({"ok": True, "channel": channel, "ts": ts, "message": message})
        if method == "chat.postEphemeral":
            return JSONResponse({"ok": True, "message_ts": fake.next_ts()})
        if method == "chat.delete":
            with fake._lock:
                fake.messages.pop((str(args.get("channel")), str(args.get("ts"))), None)
            return JSONResponse({"ok": True, "channel": args.get("channel"), "ts": args.get("ts")})
        if method in ("reactions.add", "reactions.remove"):
            return JSONResponse({"ok": True})
        return JSONResponse({"ok": False, "error": "unknown_method"})

    return app


@contextlib.contextmanager
def run_fake_slack(fake: FakeSlack | None = None, startup_timeout: float = 10.0) -> Iterator[tuple[FakeSlack, str]]:
    """Serve ``fake`` on 127.0.0.1 (free port) in a thread; yield ``(fake, base_url)``.

    ``base_url`` looks like ``http://127.0.0.1:PORT/api/`` (what ``AsyncWebClient(base_url=...)`` takes).
    """
    fake = fake or FakeSlack()
    server = ThreadedServer(create_app(fake), name="fake-slack")
    server.start(startup_timeout)
    try:
        fake.base_url = f"{server.url}/api/"
        yield fake, fake.base_url
    finally:
        server.stop()
