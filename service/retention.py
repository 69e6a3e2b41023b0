"""Bounded stored conversations: the service's periodic pruning of the conversation store.

Once at start-up and then every ``service.retention_interval_seconds``, a background
task deletes (in a worker thread, in small batches, see :meth:`ConversationStore.prune`)
the conversations not updated for ``service.conversation_max_age_days`` and those beyond
the ``service.max_conversations`` most recently updated. A failing pass is logged and
retried at the next interval; it never stops the service.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime

from rag.settings import ServiceSettings
from service.conversations import ConversationStore

log = logging.getLogger("sanad.service")


class Retention:
    """The retention policy of one conversation store, and the task that applies it."""

    def __init__(self, conversations: ConversationStore, settings: ServiceSettings) -> None:
        self.conversations = conversations
        self.settings = settings
        self.passes = 0  # passes of the background task finished, failed ones included
        self.removed = 0  # conversations deleted so far
        self.first_pass = threading.Event()  # set once the start-up pass has finished (or failed)
        self.task: asyncio.Task[None] | None = None
        self._stop = threading.Event()

    def run_once(self, now: datetime | None = None) -> int:
        """One pass, blocking (the task runs it in a worker thread): how many conversations were deleted."""
        s = self.settings
        removed = self.conversations.prune(s.conversation_max_age_days, s.max_conversations, now=now,
                                           stop=self._stop)
        self.removed += removed
        if removed:
            log.info("Retention: deleted %d conversation(s) not updated for %g days or beyond the newest %d",
                     removed, s.conversation_max_age_days, s.max_conversations)
        else:
            log.debug("Retention: no conversation to delete")
        return removed

    def _pass(self) -> None:
        try:
            self.run_once()
        except Exception:
            log.exception("Retention pass failed (next attempt in %g s)", self.settings.retention_interval_seconds)
        finally:
            self.passes += 1
            self.first_pass.set()

    async def _loop(self) -> None:
        while not self._stop.is_set():
            worker = asyncio.ensure_future(asyncio.to_thread(self._pass))
            try:
                await asyncio.shield(worker)
            except asyncio.CancelledError:
                # A thread cannot be interrupted: ask prune to stop after its current batch and wait for
                # that, so the store is not closed under it.
                self._stop.set()
                await asyncio.wait({worker})
                raise
            await asyncio.sleep(self.settings.retention_interval_seconds)

    def start(self) -> None:
        """Start the background task (from the event loop): a pass now, then one per interval."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._loop(), name="sanad-retention")

    async def stop(self) -> None:
        """Cancel the task and wait until it has ended (at most the batch in progress)."""
        self._stop.set()
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                log.error("The retention task had failed", exc_info=task.exception())
