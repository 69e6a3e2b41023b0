"""``POST /v1/chat``: an answer with citations, in a conversation; streamed as SSE on request."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from rag.engine import Sanad, Timings
from rag.models import Answer, SearchFilters, Turn
from service import answering, sse
from service.conversations import ConversationStore
from service.deps import ConversationsDep, EngineDep, MetricsDep, SettingsDep, authenticated
from service.errors import classify, error_body
from service.jsonbody import StrictJSONRoute
from service.metrics import Metrics
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
async def chat(body: Annotated[ChatRequest, Body(openapi_examples=CHAT_EXAMPLES)], engine: EngineDep,
               conversations: ConversationsDep, settings: SettingsDep,
               metrics: MetricsDep) -> Answer | StreamingResponse:
    """Answers from the indexed articles with cited quotes.

    Without `session_id` a new conversation starts; its id is in the answer. A follow-up is rewritten
    into a standalone question before retrieval (reported as `rewritten_question`).
    """
    question = answering.check_question(body.question, settings)
    session_id, history = await answering.open_session(conversations, body.session_id, settings)
    filters = SearchFilters(**body.filters.model_dump()) if body.filters else None
    if body.stream:
        events = _events(engine, conversations, metrics, question, session_id, history, body.top_k, filters)
        return StreamingResponse(events, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)
    answer, timings = await answering.ask(engine, question, history, body.top_k, filters)
    answer = answer.model_copy(update={"session_id": session_id})
    await run_in_threadpool(conversations.append_exchange, session_id, question, answer)
    metrics.observe_answer(answer, timings.retrieval_ms, timings.answer_ms, "chat")
    return answer


async def _events(engine: Sanad, conversations: ConversationStore, metrics: Metrics,
                  question: str, session_id: str, history: list[Turn], top_k: int | None,
                  filters: SearchFilters | None) -> AsyncIterator[str]:
    final: Answer | None = None
    timings = Timings()
    try:
        async for ev in answering.stream(engine, question, history, top_k, filters):
            if ev.kind == "passages":
                yield sse.event("passages", [c.model_dump(mode="json") for c in ev.data])
            elif ev.kind == "delta":
                yield sse.event("delta", {"text": ev.data})
            elif ev.kind == "reset":
                yield sse.event("reset", {})
            elif ev.kind == "timings":
                timings = ev.data
            elif ev.kind == "answer":
                final = ev.data.model_copy(update={"session_id": session_id})
                # Stored before the client hears of it: a GET right after the stream sees the turn.
                await run_in_threadpool(conversations.append_exchange, session_id, question, final)
                yield sse.event("answer", final.model_dump(mode="json"))
    except Exception as exc:
        status, code, message = classify(exc)
        if status >= 500 and code == "internal_error":
            log.exception("chat stream failed")
        else:
            log.error("chat stream failed: %s", exc)
        yield sse.event("error", error_body(code, message))
        return
    if final is not None:
        metrics.observe_answer(final, timings.retrieval_ms, timings.answer_ms, "chat")
    yield sse.event("done", {})
