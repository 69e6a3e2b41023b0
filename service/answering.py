"""Running the (synchronous) engine off the event loop, shared by the chat and OpenAI routes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from rag.engine import Event, Sanad, Timings
from rag.models import Answer, SearchFilters, Turn
from rag.settings import Settings
from service.conversations import ConversationStore, new_session_id
from service.errors import APIError

log = logging.getLogger("sanad.service")


def check_question(question: str, settings: Settings) -> str:
    """The stripped question, or a 4xx for an empty or oversized one."""
    question = question.strip()
    if not question:
        raise APIError(422, "empty_question", "The question is empty.")
    limit = settings.service.max_question_chars
    if len(question) > limit:
        raise APIError(422, "question_too_long",
                       f"The question has {len(question)} characters; the limit is {limit}.")
    return question


async def open_session(conversations: ConversationStore, session_id: str | None,
                       settings: Settings) -> tuple[str, list[Turn]]:
    """A new session id, or the given one with its recent turns; 404 for an unknown id."""
    if session_id is None:
        return new_session_id(), []
    if not await run_in_threadpool(conversations.exists, session_id):
        raise APIError(404, "session_not_found",
                       f"No conversation with id '{session_id}'. Omit session_id to start a new one.")
    history = await run_in_threadpool(conversations.history, session_id, settings.service.history_turns)
    return session_id, history


def _ask(engine: Sanad, question: str, history: list[Turn], top_k: int | None,
         filters: SearchFilters | None) -> tuple[Answer, Timings]:
    return engine.ask_timed(question, history=history, top_k=top_k, filters=filters)


async def ask(engine: Sanad, question: str, history: list[Turn], top_k: int | None,
              filters: SearchFilters | None) -> tuple[Answer, Timings]:
    return await run_in_threadpool(_ask, engine, question, history, top_k, filters)


async def stream(engine: Sanad, question: str, history: list[Turn], top_k: int | None,
                 filters: SearchFilters | None) -> AsyncIterator[Event]:
    """The engine's events, each produced in a worker thread."""
    events: Iterator[Event] = engine.stream(question, history, top_k, filters)
    try:
        async for ev in iterate_in_threadpool(events):
            yield ev
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            with contextlib.suppress(ValueError):  # still running in its thread (cancelled mid-step)
                close()
