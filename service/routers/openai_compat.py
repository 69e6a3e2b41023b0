"""``POST /v1/chat/completions``: Sanad as an OpenAI-compatible chat model.

The last user message is the question; earlier user/assistant messages are the
conversation (system messages are ignored). Citations come as ``[n]`` markers
in the text, in a sources block ending the text (``service/sources.py``; off with
``"sources": false`` or ``SANAD_SERVICE__SOURCES_IN_CONTENT=false``), and in an extra
top-level ``citations`` field (streaming: on the
first chunk the retrieved passages, on the last one the answer's citations).
The extra ``sanad`` field is the whole answer object (as ``POST /v1/chat``
returns it, without a session). Nothing is stored: the client holds the
conversation, as with any chat model.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse, StreamingResponse

from rag.engine import Event
from rag.models import Answer, SearchFilters, Turn
from service import answering, sse
from service.deps import ChatDep, SettingsDep, authenticated
from service.errors import APIError, classify, error_body
from service.jsonbody import StrictJSONRoute
from service.schemas import AR_ANSWER, COMPLETION_EXAMPLES, ChatCompletionRequest, error_responses
from service.sources import sources_block, strip_sources

log = logging.getLogger("sanad.service")

MODEL_ID = "sanad"

router = APIRouter(prefix="/v1", tags=["openai-compatible"], dependencies=authenticated,
                   route_class=StrictJSONRoute)


@router.get("/models", summary="Models (OpenAI-compatible): just Sanad")
async def models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "sanad"}]}


def _extras(answer: Answer) -> dict[str, Any]:
    return {
        "citations": [c.model_dump(mode="json") for c in answer.citations],
        # The whole answer object (answerable, degraded, rewritten_question, ...), as POST /v1/chat returns it.
        "sanad": answer.model_dump(mode="json"),
    }


def _usage(messages: list[str], answer: str) -> dict[str, int]:
    # Whitespace words: Sanad has no tokenizer of its own to bill by.
    prompt = sum(len(m.split()) for m in messages)
    completion = len(answer.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


_COMPLETION_EXAMPLE = {
    "id": "chatcmpl-3f2a…", "object": "chat.completion", "created": 1764000000, "model": "sanad",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": AR_ANSWER["answer"]},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 20, "total_tokens": 29},
    "citations": AR_ANSWER["citations"],
    "sanad": {**AR_ANSWER, "session_id": None},
}


@router.post(
    "/chat/completions",
    summary="Chat completions (OpenAI-compatible)",
    response_model=None,
    responses={
        200: {"description": "`chat.completion`, or with `stream: true` `chat.completion.chunk` events then "
                             "`data: [DONE]`.",
              "content": {"application/json": {"example": _COMPLETION_EXAMPLE},
                          "text/event-stream": {"example": 'data: {"object": "chat.completion.chunk", ...}\n\n'
                                                          "data: [DONE]\n\n"}}},
        **error_responses(400, 401, 413, 422, 429, 503),
    },
)
async def chat_completions(body: Annotated[ChatCompletionRequest, Body(openapi_examples=COMPLETION_EXAMPLES)],
                           chat: ChatDep, settings: SettingsDep) -> Any:
    last = body.messages[-1]
    if last.role != "user":
        raise APIError(422, "validation_error", "messages: the last message must be the user's question.")
    history = [Turn(role=m.role, content=strip_sources(m.text()))  # type: ignore[arg-type]
               for m in body.messages[:-1] if m.role in ("user", "assistant") and m.text().strip()]
    question = await answering.run(chat.prepare, last.text(), history=history)
    filters = SearchFilters(**body.filters.model_dump()) if body.filters else None
    model = body.model or MODEL_ID
    texts = [m.text() for m in body.messages]
    sources = settings.service.sources_in_content if body.sources is None else body.sources
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = chat.stream(question, body.top_k, filters, endpoint="openai")
        return StreamingResponse(_chunks(events, model, texts, include_usage, sources), media_type=sse.MEDIA_TYPE,
                                 headers=sse.HEADERS)
    answer = await answering.run(chat.answer, question, body.top_k, filters, endpoint="openai")
    content = answer.answer + (sources_block(answer) if sources else "")
    return JSONResponse({
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": None,
                     "finish_reason": "stop"}],
        "usage": _usage(texts, content),
        **_extras(answer),
    })


async def _chunks(events: Iterator[Event], model: str, texts: list[str], include_usage: bool,
                  sources: bool) -> AsyncIterator[str]:
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return sse.data_only({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                              "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                              **extra})

    final: Answer | None = None
    started = False
    try:
        async for ev in answering.stream_async(events):
            if ev.kind == "passages" and not started:
                started = True
                yield chunk({"role": "assistant", "content": ""},
                            citations=[c.model_dump(mode="json") for c in ev.data])
            elif ev.kind == "delta":
                if not started:
                    started = True
                    yield chunk({"role": "assistant", "content": ""})
                yield chunk({"content": ev.data})
            elif ev.kind == "reset":
                # The protocol cannot take text back: the offline answer follows after a blank line,
                # and the last chunk carries the authoritative citations.
                yield chunk({"content": "\n\n"}, sanad={"reset": True})
            elif ev.kind == "answer":
                final = ev.data
    except Exception as exc:
        status, code, message = classify(exc)
        log.error("completion stream failed: %s", exc, exc_info=status >= 500 and code == "internal_error")
        yield sse.data_only(error_body(code, message))
        yield sse.data_only("[DONE]")
        return
    if final is not None:
        block = sources_block(final) if sources else ""
        if block:
            yield chunk({"content": block})
        yield chunk({}, "stop", **_extras(final))
        if include_usage:
            yield sse.data_only({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                                 "choices": [], "usage": _usage(texts, final.answer + block)})
    yield sse.data_only("[DONE]")
