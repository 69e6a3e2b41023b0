"""``/v1/sessions``: the stored conversations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from service.deps import ConversationsDep, authenticated
from service.errors import APIError
from service.schemas import Session, SessionList, error_responses

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], dependencies=authenticated)


@router.get("", response_model=SessionList, summary="Recent conversations, newest first",
            responses=error_responses(401, 429))
async def list_sessions(conversations: ConversationsDep,
                        limit: Annotated[int, Query(ge=1, le=500)] = 50) -> SessionList:
    return SessionList.model_validate({"sessions": await run_in_threadpool(conversations.list, limit)})


@router.get("/{session_id}", response_model=Session, summary="A conversation's turns",
            responses=error_responses(401, 404, 429))
async def get_session(session_id: str, conversations: ConversationsDep) -> Session:
    session = await run_in_threadpool(conversations.get, session_id)
    if session is None:
        raise APIError(404, "session_not_found", f"No conversation with id '{session_id}'.")
    return Session.model_validate(session)


@router.delete("/{session_id}", status_code=204, summary="Delete a conversation",
               responses=error_responses(401, 404, 429))
async def delete_session(session_id: str, conversations: ConversationsDep) -> Response:
    if not await run_in_threadpool(conversations.delete, session_id):
        raise APIError(404, "session_not_found", f"No conversation with id '{session_id}'.")
    return Response(status_code=204)
