"""The Slack bot: a slack-bolt ``AsyncApp`` whose listeners acknowledge at once and answer in a task.

Flow of a question (mention in a channel, or a direct message):

1. bolt verifies the signature and timestamp (HTTP mode);
2. the listener drops bots, edits, deletions and other subtypes, and any event id or
   message already taken (Slack's retries), starts a task and returns: bolt acknowledges
   (HTTP 200) within milliseconds;
3. the task posts a placeholder in the question's thread ("⏳ جارٍ البحث…"), runs the
   engine in a worker thread with the thread's earlier turns, stores the exchange in
   the conversation store (a thread is one conversation), and replaces the placeholder
   with the answer (``chat.update``); further parts of a long answer follow in the thread.

Web API calls are retried by slack_sdk's retry handlers (connection errors, 429 with
Retry-After, 5xx with backoff); a final failure is logged with the event id and the
task ends — the service keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from rag.engine import Sanad
from rag.models import Answer, Language, Turn
from rag.settings import Settings
from rag.text import detect_language
from service.answering import Conversations
from service.conversations import ConversationStore
from service.database import DatabaseUnavailable
from service.errors import APIError
from service.slack.format import (
    FEEDBACK_DOWN,
    FEEDBACK_UP,
    TEXTS,
    USAGE,
    Message,
    clean_question,
    render_answer,
    simple,
)
from service.slack.store import SlackStore

log = logging.getLogger("sanad.slack")

# Message subtypes that carry a person's question; everything else (edits, deletions,
# joins, bot messages...) is ignored.
_QUESTION_SUBTYPES = {None, "file_share", "thread_broadcast"}
_WEB_ERRORS = (SlackApiError, SlackClientError, OSError, asyncio.TimeoutError)
_SHUTDOWN_WAIT = 10.0


class _ServerErrorRetry(AsyncServerErrorRetryHandler):
    """slack_sdk's handler retries 500 and 503 only; any 5xx is worth another try."""

    async def _can_retry_async(self, *, state: RetryState, request: HttpRequest,
                               response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        return response is not None and response.status_code >= 500


def retry_handlers() -> list[AsyncRetryHandler]:
    backoff = BackoffRetryIntervalCalculator(backoff_factor=0.5)
    return [
        AsyncConnectionErrorRetryHandler(max_retry_count=2, interval_calculator=backoff),
        AsyncRateLimitErrorRetryHandler(max_retry_count=3),  # waits Retry-After
        _ServerErrorRetry(max_retry_count=3, interval_calculator=backoff),
    ]


class SlackBot:
    """Owns the bolt app, its Web API client, the bot's SQLite store and the answering tasks."""

    def __init__(self, settings: Settings, engine: Sanad | None, conversations: ConversationStore | None,
                 state: Callable[[], Any]) -> None:
        cfg = settings.slack
        if cfg.bot_token is None:
            raise ValueError("the Slack bot needs SANAD_SLACK__BOT_TOKEN")
        self.settings = settings
        self._engine = engine
        self._conversations = conversations
        self._state = state
        self._store: SlackStore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._socket: Any = None
        client_args: dict[str, Any] = {"token": cfg.bot_token.get_secret_value(), "retry_handlers": retry_handlers(),
                                       "timeout": 30}
        if cfg.api_base_url:
            client_args["base_url"] = cfg.api_base_url
        self.client = AsyncWebClient(**client_args)
        self.app = AsyncApp(
            client=self.client,
            signing_secret=cfg.signing_secret.get_secret_value() if cfg.signing_secret else "",
            request_verification_enabled=cfg.http_enabled,  # Socket Mode has no signature to check
            # The listeners only record the event and start a task: running them before the HTTP
            # response costs milliseconds and means a 200 is sent once the event is safely taken.
            process_before_response=True,
            ignoring_self_events_enabled=True,
            raise_error_for_unhandled_request=False,
            logger=logging.getLogger("sanad.slack.bolt"),
        )
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)
        self.app.command(re.compile(r"^/"))(self._on_command)
        self.app.action(re.compile(rf"^({FEEDBACK_UP}|{FEEDBACK_DOWN})$"))(self._on_feedback)

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def store(self) -> SlackStore:
        if self._store is None:
            self._store = SlackStore.open(self.settings.data_dir, self.settings.database.url)
        return self._store

    async def start(self) -> None:
        self.store  # noqa: B018 - open the database now, not on the first event
        if self.settings.slack.socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            app_token = self.settings.slack.app_token
            assert app_token is not None
            self._socket = AsyncSocketModeHandler(self.app, app_token.get_secret_value())
            try:
                await self._socket.connect_async()
                log.info("Slack bot connected in Socket Mode")
            except Exception as exc:  # the service runs on without the bot
                log.error("Slack Socket Mode connection failed; the bot is off: %s", exc)
        else:
            log.info("Slack bot listening on POST /slack/events")

    async def stop(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close_async()
            self._socket = None
        await self.drain(_SHUTDOWN_WAIT)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._store is not None:
            self._store.close()
            self._store = None

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout`` s) for the answers being worked on."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _chat(self) -> Conversations | None:
        """The service's conversation path (or one over the engine and store the bot was given)."""
        if self._engine is not None and self._conversations is not None:
            return Conversations(self._engine, self._conversations, self.settings)
        chat = getattr(self._state(), "chat", None)
        return chat if isinstance(chat, Conversations) else None

    def _refusal(self, question: str) -> str | None:
        """Why ``question`` cannot be asked (the text key), checked the way every route checks it."""
        chat = self._chat()
        if chat is None:
            return None
        try:
            chat.check(question)
        except APIError as exc:
            return "too_long" if exc.code == "question_too_long" else "failed"
        return None

    @contextlib.asynccontextmanager
    async def _conversation(self, key: str) -> AsyncIterator[None]:
        """One answer at a time per thread, so a follow-up sees the answer before it."""
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    # -- listeners (called by bolt after the acknowledgement) -----------------------------------------
    async def _on_mention(self, event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
        await self._take(event, body, context)

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
        if event.get("channel_type") != "im":
            return  # channels are answered through app_mention only
        await self._take(event, body, context)

    async def _take(self, event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
        event_id = str(body.get("event_id") or event.get("client_msg_id") or event.get("ts"))
        if event.get("bot_id") or event.get("subtype") not in _QUESTION_SUBTYPES:
            return
        user = event.get("user")
        channel, ts = event.get("channel"), event.get("ts")
        if not user or not channel or not ts or user == context.get("bot_user_id"):
            return
        try:
            first = await asyncio.to_thread(self.store.first_sighting, f"event:{event_id}", f"msg:{channel}:{ts}")
        except DatabaseUnavailable as exc:  # answering matters more: a retry may then be answered twice
            log.error("Slack event %s: retries cannot be checked (%s); answering", event_id, exc)
            first = True
        if not first:
            log.info("Slack event %s already taken (a retry); not answered again", event_id)
            return
        thread_ts = event.get("thread_ts") or ts
        question = clean_question(event.get("text") or "", context.get("bot_user_id"))
        self._spawn(self._answer_in_thread(question, channel, thread_ts, user, body.get("team_id"), event_id))

    async def _on_command(self, ack: Any, command: dict[str, Any]) -> None:
        question = clean_question(command.get("text") or "")
        if not question:
            await ack(response_type="ephemeral", **simple(USAGE).payload())
            return
        lang: Language = detect_language(question)  # type: ignore[assignment]
        if self.settings.slack.slash_in_channel:
            await ack(response_type="in_channel")  # Slack shows the command in the channel
        else:
            await ack(response_type="ephemeral", **simple(TEXTS["searching"][lang]).payload())
        self._spawn(self._answer_command(question, lang, command))

    async def _on_feedback(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        self._spawn(self._record_feedback(body, action))

    # -- answering ---------------------------------------------------------------------------------
    async def _ask(self, question: str, session: str | None, event_id: str) -> tuple[Answer, list[Any]] | None:
        chat = self._chat()
        if chat is None:
            log.error("Slack event %s: the service is not started; no answer", event_id)
            return None
        if session is None:  # a slash command: no conversation
            q = await asyncio.to_thread(chat.prepare, question, history=[])
        else:  # a thread is one conversation, from its first message
            q = await asyncio.to_thread(chat.prepare, question, session, create=True)
        answer = await asyncio.to_thread(chat.answer, q, endpoint="slack")
        return answer, q.history

    async def _answer_in_thread(self, question: str, channel: str, thread_ts: str, user: str, team: str | None,
                                event_id: str) -> None:
        try:
            if not question:
                await self._post(event_id, channel, thread_ts, simple(USAGE))
                return
            lang: Language = detect_language(question)  # type: ignore[assignment]
            if refused := self._refusal(question):
                await self._post(event_id, channel, thread_ts, simple(TEXTS[refused][lang]))
                return
            session = f"slack:{team or '-'}:{channel}:{thread_ts}"
            async with self._conversation(session):
                placeholder = await self._post(event_id, channel, thread_ts, simple(TEXTS["searching"][lang]))
                try:
                    result = await self._ask(question, session, event_id)
                except Exception:
                    log.exception("Slack event %s: answering failed", event_id)
                    result = None
                if result is None:
                    await self._deliver(event_id, channel, thread_ts, placeholder, [simple(TEXTS["failed"][lang])])
                    return
                answer, history = result
                answer_id = await self._keep(question, answer, history, team=team, channel=channel,
                                             thread_ts=thread_ts, user=user)
                last_ts = await self._deliver(event_id, channel, thread_ts, placeholder,
                                              render_answer(answer, answer_id))
                if last_ts and answer_id:
                    with contextlib.suppress(DatabaseUnavailable):
                        await asyncio.to_thread(self.store.set_message_ts, answer_id, last_ts)
        except Exception:  # never let a task die silently, never loop
            log.exception("Slack event %s: unexpected error", event_id)

    async def _answer_command(self, question: str, lang: Language, command: dict[str, Any]) -> None:
        tag = f"command:{command.get('trigger_id') or command.get('user_id')}"
        try:
            try:
                result = None if self._refusal(question) else await self._ask(question, None, tag)
            except Exception:
                log.exception("Slack %s: answering failed", tag)
                result = None
            if result is None:
                messages = [simple(TEXTS[self._refusal(question) or "failed"][lang])]
            else:
                answer, _ = result
                answer_id = await self._keep(question, answer, [], team=command.get("team_id"),
                                             channel=command.get("channel_id"), user=command.get("user_id"))
                messages = render_answer(answer, answer_id)
            in_channel = self.settings.slack.slash_in_channel
            for m in messages:
                await self._respond(tag, command.get("response_url"), command.get("channel_id"),
                                    command.get("user_id"), m, in_channel)
        except Exception:
            log.exception("Slack %s: unexpected error", tag)

    async def _keep(self, question: str, answer: Answer, history: list[Turn], **where: Any) -> str | None:
        """Store the answer for its 👍/👎; ``None`` (the answer goes out without the buttons) when the database
        cannot be reached."""
        try:
            return await asyncio.to_thread(self.store.add_answer, question, answer, history, **where)
        except DatabaseUnavailable as exc:
            log.error("Slack: the answer is sent without rating buttons (%s)", exc)
            return None

    async def _record_feedback(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        rating = "up" if action.get("action_id") == FEEDBACK_UP else "down"
        user = (body.get("user") or {}).get("id") or "unknown"
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
        tag = f"action:{body.get('trigger_id') or user}"
        try:
            lang = await asyncio.to_thread(self.store.add_feedback, str(action.get("value") or ""), user, rating,
                                           channel, container.get("message_ts"))
            if lang not in ("ar", "en"):
                log.warning("Slack %s: feedback for an unknown answer id %r", tag, action.get("value"))
                return
            thanks = simple(TEXTS["thanks"]["ar" if lang == "ar" else "en"])
            await self._respond(tag, body.get("response_url"), channel, user, thanks, False)
        except Exception:
            log.exception("Slack %s: storing feedback failed", tag)

    # -- Web API ---------------------------------------------------------------------------------
    async def _post(self, event_id: str, channel: str, thread_ts: str | None, message: Message) -> str | None:
        try:
            response = await self.client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, parse="none", link_names=False, unfurl_links=False,
                unfurl_media=False, **message.payload())
            return str(response["ts"])
        except _WEB_ERRORS as exc:
            log.error("Slack event %s: chat.postMessage failed after retries: %s", event_id, exc)
            return None

    async def _update(self, event_id: str, channel: str, ts: str, message: Message) -> str | None:
        try:
            await self.client.chat_update(channel=channel, ts=ts, parse="none", link_names=False, **message.payload())
            return ts
        except _WEB_ERRORS as exc:
            log.error("Slack event %s: chat.update failed after retries: %s", event_id, exc)
            return None

    async def _deliver(self, event_id: str, channel: str, thread_ts: str, placeholder: str | None,
                       messages: list[Message]) -> str | None:
        """The first message replaces the placeholder (or is posted if there is none); the rest follow."""
        last: str | None = None
        for i, m in enumerate(messages):
            ts = await self._update(event_id, channel, placeholder, m) if i == 0 and placeholder else None
            if ts is None and i == 0 and placeholder:
                with contextlib.suppress(*_WEB_ERRORS):  # the placeholder would otherwise stay
                    await self.client.chat_delete(channel=channel, ts=placeholder)
            last = ts or await self._post(event_id, channel, thread_ts, m) or last
        return last

    async def _respond(self, tag: str, response_url: str | None, channel: str | None, user: str | None,
                       message: Message, in_channel: bool) -> None:
        """Reply to a slash command or a click: through its response_url, else chat.postEphemeral."""
        if response_url:
            webhook = AsyncWebhookClient(response_url, timeout=30, retry_handlers=retry_handlers())
            try:
                response = await webhook.send_dict({
                    "response_type": "in_channel" if in_channel else "ephemeral", "replace_original": False,
                    **message.payload()})
                if response.status_code < 400:
                    return
                log.error("Slack %s: response_url answered %s: %s", tag, response.status_code, response.body)
            except _WEB_ERRORS as exc:
                log.error("Slack %s: response_url failed after retries: %s", tag, exc)
        if not channel or not user:
            return
        try:
            if in_channel:
                await self.client.chat_postMessage(channel=channel, parse="none", link_names=False,
                                                   unfurl_links=False, unfurl_media=False, **message.payload())
            else:
                await self.client.chat_postEphemeral(channel=channel, user=user, parse="none", link_names=False,
                                                     **message.payload())
        except _WEB_ERRORS as exc:
            log.error("Slack %s: reply failed after retries: %s", tag, exc)
