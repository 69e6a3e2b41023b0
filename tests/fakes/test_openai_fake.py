"""Tests for the fake OpenAI server, driven by real clients."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from .openai_server import DEFAULT_REPLY, FakeOpenAI, run_fake_openai


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeOpenAI, str]]:
    with run_fake_openai() as running:
        yield running


@pytest.fixture
def fake(server: tuple[FakeOpenAI, str]) -> Iterator[FakeOpenAI]:
    server[0].reset()
    yield server[0]
    server[0].reset()


@pytest.fixture
def client(server: tuple[FakeOpenAI, str]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server[1], api_key="x", max_retries=0, timeout=5) as c:
        yield c


def _chat(client: openai.OpenAI, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "hi"}], **kwargs
    )


def test_chat_non_streaming(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.reply = lambda messages: f"Saw {len(messages)} message(s) [2]"
    resp = _chat(client)
    assert resp.choices[0].message.content == "Saw 1 message(s) [2]"
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.total_tokens > 0
    assert fake.requests[-1]["path"] == "/v1/chat/completions"
    assert fake.requests[-1]["body"]["messages"] == [{"role": "user", "content": "hi"}]


def test_chat_default_reply(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    assert _chat(client).choices[0].message.content == DEFAULT_REPLY == "OK [1]"


def test_chat_streaming_reassembles(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.reply = lambda messages: "The answer is  42, see [1] and [3]."
    chunks = list(_chat(client, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks]
    assert len([p for p in pieces if p]) > 3
    assert "".join(pieces) == "The answer is  42, see [1] and [3]."
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_legacy_completions(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    resp = client.completions.create(model="fake-model", prompt="hello")
    assert resp.choices[0].text == DEFAULT_REPLY
    assert fake.bodies("/completions")[-1]["prompt"] == "hello"


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["fake-model"]


@pytest.mark.parametrize("encoding_format", [None, "float"])
def test_embeddings(
    fake: FakeOpenAI, client: openai.OpenAI, encoding_format: str | None
) -> None:
    fake.embed_dim = 32
    extra: dict[str, Any] = (
        {"encoding_format": encoding_format} if encoding_format else {}
    )
    texts = ["the cat sat on the mat", "the cat sat on a mat", "quantum chromodynamics"]
    first = client.embeddings.create(model="fake-model", input=texts, **extra)
    again = client.embeddings.create(model="fake-model", input=texts[0], **extra)
    vecs = [d.embedding for d in first.data]
    assert fake.requests[0]["body"]["encoding_format"] == (encoding_format or "base64")
    assert all(len(v) == 32 for v in vecs)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vecs)
    assert again.data[0].embedding == pytest.approx(vecs[0], abs=1e-6)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2])


def test_error500(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.mode = "error500"
    with pytest.raises(openai.InternalServerError) as exc_info:
        _chat(client)
    assert exc_info.value.status_code == 500
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="fake-model", input="x")


def test_malformed(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.mode = "malformed"
    # openai does not wrap it: response.json() / the SSE decoder raise JSONDecodeError.
    with pytest.raises(json.JSONDecodeError):
        _chat(client)
    with pytest.raises(json.JSONDecodeError):
        list(_chat(client, stream=True))


def test_hang_times_out(fake: FakeOpenAI, server: tuple[FakeOpenAI, str]) -> None:
    fake.mode = "hang"
    with openai.OpenAI(
        base_url=server[1], api_key="x", max_retries=0, timeout=1
    ) as slow:
        start = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            _chat(slow)
        assert time.monotonic() - start < 3
    # The server stays responsive for other requests.
    fake.mode = "ok"
    with openai.OpenAI(base_url=server[1], api_key="x", max_retries=0, timeout=2) as c:
        assert _chat(c).choices[0].message.content == DEFAULT_REPLY


def test_hang_then_answers(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.mode, fake.hang_seconds = "hang", 0.2
    assert _chat(client).choices[0].message.content == DEFAULT_REPLY


def test_drop_streaming_raises(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.mode = "drop"
    fake.reply = lambda messages: "one two three four"
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        for chunk in _chat(client, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["", "one "]


def test_drop_non_streaming_raises(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.mode = "drop"
    with pytest.raises(openai.APIConnectionError):
        _chat(client)


def test_shutdown_with_hang_in_flight() -> None:
    before = threading.active_count()
    outcome: list[object] = []

    def call(base_url: str) -> None:
        try:
            outcome.append(
                httpx.post(f"{base_url}/chat/completions", json={}, timeout=30)
            )
        except httpx.HTTPError as exc:
            outcome.append(exc)

    start = time.monotonic()
    with run_fake_openai() as (fake, base_url):
        fake.mode = "hang"
        hung = threading.Thread(target=call, args=(base_url,), daemon=True)
        hung.start()
        while not fake.requests:
            time.sleep(0.01)
    assert time.monotonic() - start < 3
    hung.join(timeout=5)
    assert not hung.is_alive() and len(outcome) == 1
    assert threading.active_count() == before


def test_llama_index_openai_like(
    fake: FakeOpenAI, server: tuple[FakeOpenAI, str]
) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    fake.reply = lambda messages: "Sanad says hello [1]"
    llm = OpenAILike(
        model="fake-model",
        api_base=server[1],
        api_key="x",
        is_chat_model=True,
        context_window=8000,
        max_retries=0,
    )
    resp = llm.chat([ChatMessage(role="user", content="hi")])
    assert resp.message.content == "Sanad says hello [1]"
    assert fake.requests[-1]["body"]["messages"][-1]["content"] == "hi"
