"""``POST /v1/search``: ranked passages without an answer (integrations, evaluation)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from starlette.concurrency import run_in_threadpool

from rag.models import SearchFilters
from service.deps import EngineDep, authenticated
from service.jsonbody import StrictJSONRoute
from service.schemas import SEARCH_EXAMPLES, SearchRequest, SearchResponse, error_responses

router = APIRouter(prefix="/v1", tags=["search"], dependencies=authenticated, route_class=StrictJSONRoute)


@router.post("/search", response_model=SearchResponse, summary="Ranked passages for a query",
             responses=error_responses(400, 401, 413, 422, 429, 503))
async def search(body: Annotated[SearchRequest, Body(openapi_examples=SEARCH_EXAMPLES)],
                 engine: EngineDep) -> SearchResponse:
    filters = SearchFilters(**body.filters.model_dump()) if body.filters else None
    passages = await run_in_threadpool(engine.search, body.query, body.top_k, filters)
    return SearchResponse(query=body.query, passages=passages)
