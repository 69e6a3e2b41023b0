"""What the running service holds: built by the app's lifespan, reached through ``service.deps``."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from index.ingest import Indexer
from rag.engine import Sanad
from rag.settings import Settings
from service.answering import Conversations
from service.conversations import ConversationStore
from service.metrics import Metrics


@dataclass
class ServiceState:
    settings: Settings
    engine: Sanad
    conversations: ConversationStore
    metrics: Metrics
    # Index writes (add, replace, delete) one at a time: an article's chunks and record change together.
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    # Called after a bulk upload left dense vectors pending: the runtime fills them in the background.
    on_dense_pending: Callable[[], object] | None = None

    @functools.cached_property
    def chat(self) -> Conversations:
        """The one path for a question (the chat routes, the OpenAI route and the Slack bot)."""
        return Conversations(self.engine, self.conversations, self.settings, self.metrics)

    @functools.cached_property
    def indexer(self) -> Indexer:
        return Indexer(self.engine.store, self.engine.encoder, self.engine.embedder, self.settings.index)


class LockedClient:
    """Serializes every call on the embedded Qdrant client.

    Local mode keeps collections in plain Python structures with no locking of
    its own; the service calls it from worker threads (answers, ingestion), so
    each call runs alone. Calls are short (milliseconds); LLM time is not under
    the lock.
    """

    def __init__(self, client: Any, lock: threading.RLock | None = None) -> None:
        self._client = client
        self._lock = lock or threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        lock = self._lock

        @functools.wraps(attr)
        def locked(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return attr(*args, **kwargs)

        return locked


def embedded_store(settings: Settings) -> bool:
    """True for the on-disk embedded store, the one a single process must own."""
    return not settings.qdrant.url and settings.qdrant_path != ":memory:"
