"""Adding the bot to a FastAPI app: the events route and the app's lifespan (see ``mount_slack``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler

from rag.engine import Sanad
from rag.settings import Settings
from service.conversations import ConversationStore
from service.slack.bot import SlackBot

EVENTS_PATH = "/slack/events"


def mount(app: FastAPI, settings: Settings, engine: Sanad | None, conversations: ConversationStore | None) -> None:
    cfg = settings.slack
    if not (cfg.http_enabled or cfg.socket_mode) or getattr(app.state, "slack", None) is not None:
        return  # not configured, or already mounted (mounting twice is a no-op)

    bot = SlackBot(settings, engine, conversations, state=lambda: getattr(app.state, "sanad", None))
    app.state.slack = bot

    if cfg.http_enabled:
        handler = AsyncSlackRequestHandler(bot.app)

        @app.post(EVENTS_PATH, include_in_schema=False)
        async def slack_events(request: Request) -> Response:
            # bolt checks the signature and timestamp (constant-time) before anything else: 401 otherwise.
            return await handler.handle(request)

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state:  # the service first: the bot answers through it
            await bot.start()
            try:
                yield state
            finally:
                await bot.stop()

    app.router.lifespan_context = lifespan
