"""FastAPI dependencies: the engine, the conversation store, settings, metrics, the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.engine import Sanad
from rag.settings import Settings
from service.answering import Conversations
from service.conversations import ConversationStore
from service.errors import APIError
from service.metrics import Metrics
from service.state import ServiceState

# Documents the scheme in OpenAPI (the "Authorize" button in /docs). Enforcement
# is in AccessMiddleware, so a request without a key is refused before its body is read.
bearer = HTTPBearer(auto_error=False, description="Required when SANAD_API_KEYS is set.")


def get_state(request: Request) -> ServiceState:
    state = getattr(request.app.state, "sanad", None)
    if state is None:
        reason = getattr(request.app.state, "store_error", None)
        if reason:
            raise APIError(503, "store_unavailable", f"The store is unreachable: {reason}. "
                           "The service connects as soon as it is back (see /readyz).")
        raise APIError(503, "starting", "The service is not started (its lifespan has not run).")
    assert isinstance(state, ServiceState)
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_chat(state: StateDep) -> Conversations:
    return state.chat


def get_engine(state: StateDep) -> Sanad:
    return state.engine


def get_conversations(state: StateDep) -> ConversationStore:
    return state.conversations


def get_settings(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


def get_metrics(request: Request) -> Metrics:
    metrics = request.app.state.metrics
    assert isinstance(metrics, Metrics)
    return metrics


def get_client(request: Request,
               credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None) -> str:
    """Who is calling (a key digest or ``ip:<addr>``), as established by AccessMiddleware."""
    client = getattr(request.state, "client", None)
    return str(client) if client else "anonymous"


ChatDep = Annotated[Conversations, Depends(get_chat)]
EngineDep = Annotated[Sanad, Depends(get_engine)]
ConversationsDep = Annotated[ConversationStore, Depends(get_conversations)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ClientDep = Annotated[str, Depends(get_client)]
# Router-level dependency: every /v1 route shows the bearer scheme in the docs.
authenticated = [Depends(get_client)]
