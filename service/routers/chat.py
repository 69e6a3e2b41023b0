"""``POST /v1/chat``: an answer with citations, in a conversation; streamed as SSE on request."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import StreamingResponse

from rag.engine import Event
from rag.models import Answer, SearchFilters
from service import answering, sse
from service.deps import ChatDep, authenticated
from service.errors import classify, error_body
from service.jsonbody import StrictJSONRoute
from service.schemas import ANSWER_EXAMPLES, CHAT_EXAMPLES, SSE_EXAMPLE, ChatRequest, error_responses

log = logging.getLogger("sanad.service")

router = APIRouter(prefix="/v1", tags=["chat"], dependencies=authenticated, route_class=StrictJSONRoute)


@router.post(
    "/chat",
    response_model=Answer,
    summary="Ask a question (optionally in a conversation)",
    responses={
        200: {
            "description": "The answer object; with `stream: true`, server-sent events: `passages` (the "
                           "citations), `delta` (`{\"text\": ...}`, repeated), `reset` (the LLM failed: discard "
                           "the text so far, the offline answer follows), `answer` (the complete answer object, "
                           "authoritative for text and citations), then `done`; `error` if it fails midway.",
            "content": {"application/json": {"examples": ANSWER_EXAMPLES},
                        "text/event-stream": {"example": SSE_EXAMPLE}},
        },
        **error_responses(400, 401, 404, 413, 422, 429, 503),
    },
)
async def chat(body: Annotated[ChatRequest, Body(openapi_examples=CHAT_EXAMPLES)], chat: ChatDep) -> Any:
    """Answers from the indexed articles with cited quotes.

    Without `session_id` a new conversation starts; its id is in the answer. A follow-up is rewritten
    into a standalone question before retrieval (reported as `rewritten_question`).
    """
    question = await answering.run(chat.prepare, body.question, body.session_id)
    filters = SearchFilters(**body.filters.model_dump()) if body.filters else None
    if body.stream:
        events = _events(chat.stream(question, body.top_k, filters, endpoint="chat"))
        return StreamingResponse(events, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)
    return await answering.run(chat.answer, question, body.top_k, filters, endpoint="chat")


async def _events(events: Iterator[Event]) -> AsyncIterator[str]:
    try:
        async for ev in answering.stream_async(events):
            if ev.kind == "passages":
                yield sse.event("passages", [c.model_dump(mode="json") for c in ev.data])
            elif ev.kind == "delta":
                yield sse.event("delta", {"text": ev.data})
            elif ev.kind == "reset":
                yield sse.event("reset", {})
            elif ev.kind == "answer":  # already stored: a GET right after the stream sees the turn
                yield sse.event("answer", ev.data.model_dump(mode="json"))
    except Exception as exc:
        status, code, message = classify(exc)
        if status >= 500 and code == "internal_error":
            log.exception("chat stream failed")
        else:
            log.error("chat stream failed: %s", exc)
        yield sse.event("error", error_body(code, message))
        return
    yield sse.event("done", {})
