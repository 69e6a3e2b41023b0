"""A small, real OpenAI-compatible HTTP server for tests.

Usage::

    with run_fake_openai() as (fake, base_url):
        fake.reply = lambda messages: "Answer [2]"
        client = openai.OpenAI(base_url=base_url, api_key="x")
        ...
        assert "[2]" in fake.requests[-1]["body"]["messages"][-1]["content"]

Behaviour is scripted through the attributes of `FakeOpenAI`, which tests may
change between requests. `mode` applies to every POST endpoint.

Quirks of the servers users run, each settable:
- a reasoning model's thinking in the content (``fake.reply`` returning ``"<think>…</think>answer"``,
  as Qwen3 or DeepSeek-R1 behind llama.cpp or Ollama send it);
- thinking in a separate field (``fake.reasoning``, sent as ``reasoning_content`` like llama.cpp and
  DeepSeek, or ``reasoning`` like vLLM and Ollama, by ``fake.reasoning_field``), streamed as deltas;
- a final usage-only chunk with an empty ``choices`` list (``fake.usage_chunk``, as vLLM and OpenAI send
  with ``stream_options.include_usage``);
- a stream that trickles (``fake.trickle_seconds`` between pieces);
- an empty ``choices`` list in the reply itself (``mode = "empty_choices"``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import math
import re
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from tests.servers import ThreadedServer

Mode = Literal["ok", "hang", "error500", "malformed", "drop", "empty_choices"]

MODEL_NAME = "fake-model"
DEFAULT_REPLY = "OK [1]"
MALFORMED_BODY = b'{"choices": ['


def _default_reply(messages: list[dict[str, Any]]) -> str:
    """Default scripted reply: a fixed string citing passage [1]."""
    return DEFAULT_REPLY


class FakeOpenAI:
    """Scripted behaviour of the fake server; attributes are settable by tests."""

    def __init__(self) -> None:
        self.reply: Callable[[list[dict[str, Any]]], str] = _default_reply
        self.mode: Mode = "ok"
        self.hang_seconds: float = 30.0
        self.embed_dim: int = 64
        self.reasoning: str | None = None
        self.reasoning_field: str = "reasoning_content"
        self.usage_chunk: bool = False
        self.trickle_seconds: float = 0.0
        #: Every received request, in order: ``{"path": str, "body": dict}``.
        self.requests: list[dict[str, Any]] = []
        self._stopping = threading.Event()

    def reset(self) -> None:
        """Restore defaults and forget recorded requests."""
        self.reply = _default_reply
        self.mode = "ok"
        self.hang_seconds = 30.0
        self.embed_dim = 64
        self.reasoning = None
        self.reasoning_field = "reasoning_content"
        self.usage_chunk = False
        self.trickle_seconds = 0.0
        self.requests.clear()

    def bodies(self, path_suffix: str = "") -> list[dict[str, Any]]:
        """Request bodies whose path ends with `path_suffix` (all by default)."""
        return [r["body"] for r in self.requests if r["path"].endswith(path_suffix)]


# --------------------------------------------------------------------------- helpers


def embed_text(text: str, dim: int) -> list[float]:
    """Deterministic unit-norm vector from hashed character trigrams."""
    vec = [0.0] * dim
    padded = f"  {text.lower()} "
    for i in range(len(padded) - 2):
        digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=8).digest()
        idx = int.from_bytes(digest[:4], "little") % dim
        vec[idx] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0.0:
        vec[0], norm = 1.0, 1.0
    return [v / norm for v in vec]


def _split_pieces(text: str) -> list[str]:
    """Split text into word-sized pieces that keep their whitespace."""
    return re.findall(r"\s*\S+\s*|\s+", text)


def _count_tokens(text: str) -> int:
    return len(text.split())


def _messages_text(messages: list[dict[str, Any]]) -> str:
    parts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):  # content parts
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
        elif content:
            parts.append(str(content))
    return " ".join(parts)


def _sse(obj: Any) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj)
    return f"data: {data}\n\n".encode()


class _DroppedResponse(Response):
    """Sends headers and some body, then returns without completing it.

    Uvicorn then closes the connection abruptly (and logs an error about it).
    """

    def __init__(self, chunks: list[bytes], headers: dict[str, str]) -> None:
        self.status_code = 200
        self.background = None
        self.chunks = chunks
        self.raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
        )
        for chunk in self.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


def _error_500() -> JSONResponse:
    return JSONResponse(
        status_code=500,
        content={
            "error": {
                "message": "The server had an error while processing your request.",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        },
    )


# --------------------------------------------------------------------------- app


def create_app(fake: FakeOpenAI) -> FastAPI:
    """Build the ASGI app serving `fake`'s scripted behaviour."""
    app = FastAPI(title="fake-openai")

    async def receive_json(request: Request) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(await request.body() or b"{}")
        fake.requests.append({"path": request.url.path, "body": body})
        return body

    async def hang(request: Request) -> None:
        """Sleep `hang_seconds`, returning early on disconnect or server stop."""
        deadline = time.monotonic() + fake.hang_seconds
        while time.monotonic() < deadline and not fake._stopping.is_set():
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.05)

    async def misbehave(request: Request) -> Response | None:
        """Apply `fake.mode` (non-streaming shapes); None means answer normally."""
        if fake.mode == "hang":
            await hang(request)
        elif fake.mode == "error500":
            return _error_500()
        elif fake.mode == "malformed":
            return Response(MALFORMED_BODY, media_type="application/json")
        elif fake.mode == "drop":
            partial = MALFORMED_BODY
            headers = {
                "content-type": "application/json",
                "content-length": str(len(partial) + 100),
            }
            return _DroppedResponse([partial], headers)
        return None

    def chat_stream_broken(body: dict[str, Any], model: str) -> Response:
        """Streaming "malformed" (bad JSON event) or "drop" (cut after two chunks)."""
        headers = {"content-type": "text/event-stream"}
        if fake.mode == "malformed":
            return Response(_sse(MALFORMED_BODY.decode()), headers=headers)
        text = fake.reply(body.get("messages") or [])
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        chunks = [_sse(_chunk(cid, created, model, {"role": "assistant"}))]
        chunks += [
            _sse(_chunk(cid, created, model, {"content": piece}))
            for piece in _split_pieces(text)[:1]
        ]
        return _DroppedResponse(chunks, headers)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": MODEL_NAME,
                    "object": "model",
                    "created": 0,
                    "owned_by": "sanad-tests",
                }
            ],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        body = await receive_json(request)
        messages: list[dict[str, Any]] = body.get("messages") or []
        model = body.get("model") or MODEL_NAME
        stream = bool(body.get("stream"))
        if stream and fake.mode in ("malformed", "drop"):
            return chat_stream_broken(body, model)
        bad = await misbehave(request)
        if bad is not None:
            return bad
        text = fake.reply(messages)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if stream:
            return StreamingResponse(
                _chat_stream(fake, cid, created, model, text, _messages_text(messages)),
                media_type="text/event-stream",
            )
        prompt_tokens, completion_tokens = (
            _count_tokens(_messages_text(messages)),
            _count_tokens(text),
        )
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if fake.reasoning is not None:
            message[fake.reasoning_field] = fake.reasoning
        choices: list[dict[str, Any]] = [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
        ]
        payload = {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [] if fake.mode == "empty_choices" else choices,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        if fake.trickle_seconds:  # the body itself arrives a few bytes at a time
            return StreamingResponse(_trickle(fake, json.dumps(payload).encode()), media_type="application/json")
        return JSONResponse(payload)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = await receive_json(request)
        bad = await misbehave(request)
        if bad is not None:
            return bad
        prompt = body.get("prompt") or ""
        prompt_text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        text = fake.reply([{"role": "user", "content": prompt_text}])
        prompt_tokens, completion_tokens = (
            _count_tokens(prompt_text),
            _count_tokens(text),
        )
        return JSONResponse(
            {
                "id": f"cmpl-{uuid.uuid4().hex[:24]}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": body.get("model") or MODEL_NAME,
                "choices": [
                    {
                        "index": 0,
                        "text": text,
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = await receive_json(request)
        bad = await misbehave(request)
        if bad is not None:
            return bad
        raw = body.get("input", "")
        texts = [raw] if isinstance(raw, str) else [str(t) for t in raw]
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec = embed_text(text, fake.embed_dim)
            emb: list[float] | str = (
                base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
                if as_base64
                else vec
            )
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(_count_tokens(t) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model") or MODEL_NAME,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    return app


def _chunk(
    cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        ],
    }


async def _trickle(fake: FakeOpenAI, body: bytes, pieces: int = 60) -> AsyncIterator[bytes]:
    step = max(1, math.ceil(len(body) / pieces))
    for i in range(0, len(body), step):
        await asyncio.sleep(fake.trickle_seconds)
        if fake._stopping.is_set():
            return
        yield body[i : i + step]


async def _chat_stream(
    fake: FakeOpenAI, cid: str, created: int, model: str, text: str, prompt: str
) -> AsyncIterator[bytes]:
    if fake.mode == "empty_choices":  # chunks that carry nothing, then the end
        for _ in range(3):
            yield _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                        "choices": []})
        yield _sse("[DONE]")
        return
    yield _sse(_chunk(cid, created, model, {"role": "assistant"}))
    pieces = [{fake.reasoning_field: p} for p in _split_pieces(fake.reasoning or "")]
    pieces += [{"content": p} for p in _split_pieces(text)]
    for delta in pieces:
        if fake.trickle_seconds:
            await asyncio.sleep(fake.trickle_seconds)
            if fake._stopping.is_set():
                return
        yield _sse(_chunk(cid, created, model, delta))
    yield _sse(_chunk(cid, created, model, {}, finish="stop"))
    if fake.usage_chunk:
        prompt_tokens, completion_tokens = _count_tokens(prompt), _count_tokens(text)
        yield _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                             "total_tokens": prompt_tokens + completion_tokens}})
    yield _sse("[DONE]")


# --------------------------------------------------------------------------- runner


@contextlib.contextmanager
def run_fake_openai(
    fake: FakeOpenAI | None = None, startup_timeout: float = 10.0
) -> Iterator[tuple[FakeOpenAI, str]]:
    """Serve `fake` on 127.0.0.1 (free port) in a thread; yield ``(fake, base_url)``.

    `base_url` looks like ``http://127.0.0.1:PORT/v1``. The server is stopped and
    its thread joined on exit, even while a "hang" request is in flight.
    """
    fake = fake or FakeOpenAI()
    fake._stopping.clear()
    server = ThreadedServer(create_app(fake), name="fake-openai")
    server.start(startup_timeout)
    try:
        yield fake, f"{server.url}/v1"
    finally:
        fake._stopping.set()
        server.stop()
