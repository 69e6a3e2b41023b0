"""One path for a question, whichever door it came in by: ``/v1/chat``, ``/v1/chat/completions``,
the Slack bot, or ``sanad ask`` on the data folder.

    chat = Conversations(engine, store, settings, metrics)
    q = chat.prepare("ومن مثل تركيا فيه؟", session_id=sid)       # 422 / 404 here, before any answer work
    answer = chat.answer(q, endpoint="chat")                     # answered, stored, counted

:meth:`Conversations.prepare` checks the question and loads the conversation (from the
store, or the history the client sent); :meth:`answer` and :meth:`stream` answer it,
store the exchange before the caller sees the final answer (a read right after sees the
turn), and record the metrics. The methods are synchronous: the async routes run them in
worker threads (:func:`run` and :func:`stream_async`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from rag.engine import Event, Sanad
from rag.models import Answer, SearchFilters, Turn
from rag.settings import Settings
from service.conversations import ConversationStore, new_session_id
from service.database import DatabaseUnavailable
from service.errors import APIError
from service.metrics import Metrics

T = TypeVar("T")


log = logging.getLogger("sanad.service")


@dataclass
class Question:
    """A checked question with the conversation it belongs to."""

    text: str
    history: list[Turn] = field(default_factory=list)
    session_id: str | None = None  # None: nothing is stored (the client holds the conversation)
    memory_lost: bool = False  # the database was unreachable: answered on the question alone, not stored


class Conversations:
    def __init__(self, engine: Sanad, store: ConversationStore, settings: Settings,
                 metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.store = store
        self.settings = settings
        self.metrics = metrics

    def check(self, question: str) -> str:
        """The stripped question, or a 422 for an empty or oversized one."""
        question = question.strip()
        if not question:
            raise APIError(422, "empty_question", "The question is empty.")
        limit = self.settings.service.max_question_chars
        if len(question) > limit:
            raise APIError(422, "question_too_long",
                           f"The question has {len(question)} characters; the limit is {limit}.")
        return question

    def prepare(self, question: str, session_id: str | None = None, *, history: list[Turn] | None = None,
                create: bool = False) -> Question:
        """Check ``question`` and load its conversation.

        With ``history`` (the OpenAI protocol: the client sends the messages), nothing is stored.
        Otherwise ``session_id`` continues a stored conversation (404 when unknown, unless
        ``create``: a Slack thread is a conversation from its first message), and ``None``
        starts a new one.
        """
        text = self.check(question)
        keep = self.settings.service.history_turns
        if history is not None:
            return Question(text, history[-keep:] if keep else [], None)
        if session_id is None:
            return Question(text, [], new_session_id())
        try:
            if not create and not self.store.exists(session_id):
                raise APIError(404, "session_not_found",
                               f"No conversation with id '{session_id}'. Omit session_id to start a new one.")
            return Question(text, self.store.history(session_id, keep), session_id)
        except DatabaseUnavailable as exc:
            # The answer still comes, on the question's own words, and is not stored (``degraded``).
            log.warning("Answering without conversation memory: %s", exc)
            return Question(text, [], None, memory_lost=True)

    def answer(self, q: Question, top_k: int | None = None, filters: SearchFilters | None = None,
               endpoint: str = "chat") -> Answer:
        answer, timings = self.engine.ask_timed(q.text, history=q.history, top_k=top_k, filters=filters)
        answer = self._keep(q, answer)
        if self.metrics is not None:
            self.metrics.observe_answer(answer, timings.retrieval_ms, timings.answer_ms, endpoint)
        return answer

    def stream(self, q: Question, top_k: int | None = None, filters: SearchFilters | None = None,
               endpoint: str = "chat") -> Iterator[Event]:
        """The engine's events; the ``answer`` event carries the stored answer (with its session)."""
        events = self.engine.stream(q.text, q.history, top_k, filters)
        retrieval_ms = answer_ms = 0.0
        final: Answer | None = None
        try:
            for ev in events:
                if ev.kind == "timings":
                    retrieval_ms, answer_ms = ev.data.retrieval_ms, ev.data.answer_ms
                elif ev.kind == "answer":
                    final = self._keep(q, ev.data)
                    ev = Event("answer", final)
                yield ev
        finally:
            close: Callable[[], Any] | None = getattr(events, "close", None)
            if close is not None:
                with contextlib.suppress(ValueError):  # still running in its thread (cancelled mid-step)
                    close()
        if final is not None and self.metrics is not None:
            self.metrics.observe_answer(final, retrieval_ms, answer_ms, endpoint)

    def _keep(self, q: Question, answer: Answer) -> Answer:
        if q.memory_lost:
            return answer.model_copy(update={"degraded": True})
        if q.session_id is None:
            return answer
        stored = answer.model_copy(update={"session_id": q.session_id})
        try:
            self.store.append_exchange(q.session_id, q.text, stored)
        except DatabaseUnavailable as exc:
            log.warning("The answer was given but not stored: %s", exc)
            return answer.model_copy(update={"degraded": True})
        return stored


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn`` in a worker thread: the engine and the store are synchronous."""
    return await run_in_threadpool(fn, *args, **kwargs)


async def stream_async(events: Iterator[Event]) -> AsyncIterator[Event]:
    """Each of ``events`` produced in a worker thread."""
    try:
        async for ev in iterate_in_threadpool(events):
            yield ev
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            with contextlib.suppress(ValueError):
                close()
