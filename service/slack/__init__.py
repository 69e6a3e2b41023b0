"""Sanad's Slack bot (slack-bolt), served by the same process as the chat service.

``mount_slack(app, settings, engine, conversations)`` adds it to a FastAPI app:

* ``SANAD_SLACK__BOT_TOKEN`` + ``SANAD_SLACK__SIGNING_SECRET``: ``POST /slack/events``
  (events, the slash command and button clicks; bolt checks every signature);
* ``SANAD_SLACK__BOT_TOKEN`` + ``SANAD_SLACK__APP_TOKEN``: Socket Mode, connected while the
  app runs (no public URL);
* neither: nothing is added.

``engine`` and ``conversations`` may be ``None``: they are then taken from the running
app's state (``app.state.sanad``, built by its lifespan) when an event arrives. The bot is
``app.state.slack``; a second call on the same app does nothing.

Importing this package is cheap (the CLI imports ``service.slack.cli``); bolt and FastAPI
load when the bot is mounted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from rag.engine import Sanad
    from rag.settings import Settings
    from service.conversations import ConversationStore

__all__ = ["mount_slack"]


def mount_slack(app: FastAPI, settings: Settings, engine: Sanad | None,
                conversations: ConversationStore | None) -> None:
    """Add the Slack bot to ``app`` as configured by ``settings.slack`` (a no-op when it is not)."""
    if not (settings.slack.http_enabled or settings.slack.socket_mode):
        return
    from service.slack.mount import mount

    mount(app, settings, engine, conversations)
