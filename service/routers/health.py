"""``/healthz`` (alive), ``/readyz`` (store reachable; LLM reachable or reported degraded), ``/metrics``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from rag.store import PassageStore
from service.coordination import JOBS
from service.database import Database
from service.deps import MetricsDep, authenticated
from service.metrics import CONTENT_TYPE
from service.state import ServiceState

router = APIRouter(tags=["health"])

T = TypeVar("T")
STORE_TIMEOUT = 5.0
DATABASE_TIMEOUT = 5.0
LLM_TIMEOUT = 3.0


async def _run(fn: Callable[[], T], timeout: float) -> T:
    """``fn`` in a worker thread, given up on (not waited for) after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        return await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no reply within {timeout:g} s"
    return str(exc) or type(exc).__name__


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Ready to answer: store reachable; the LLM reachable or reported as degraded",
    responses={503: {"description": "The store is unreachable (or the service is starting)", "content": {
        "application/json": {"example": {"status": "unavailable", "store": {"ok": False, "reason": "..."},
                                         "error": {"code": "store_unavailable", "message": "..."}}}}}},
)
async def readyz(request: Request) -> JSONResponse:
    state: ServiceState | None = getattr(request.app.state, "sanad", None)
    if state is None:
        reason = getattr(request.app.state, "store_error", None)
        if reason:  # a Qdrant server that was down at start-up; retried in the background
            return JSONResponse({"status": "unavailable", "store": {"ok": False, "reason": reason},
                                 "error": {"code": "store_unavailable",
                                           "message": f"The store is unreachable: {reason}"}}, status_code=503)
        return JSONResponse({"status": "starting", "error": {"code": "starting", "message": "Starting up."}},
                            status_code=503)
    engine = state.engine
    body: dict[str, Any] = {}
    try:
        await _run(engine.store.ping, STORE_TIMEOUT)
        chunks = await _run(engine.store.count_chunks, STORE_TIMEOUT)
        body["store"] = {"ok": True, "chunks": chunks}
        if engine.embedder is not None:
            pending = await _run(engine.store.count_dense_pending, STORE_TIMEOUT)
            # A bulk run is searchable at once; the dense vectors follow (filled in the background, newest
            # first). Chunks that have theirs are ranked hybrid, the others lexically, in one ranking.
            body["store"]["dense"] = {"done": chunks - pending, "pending": pending,
                                      "retrieval": "hybrid" if pending == 0 else
                                      "hybrid where filled, lexical for the chunks still pending",
                                      "encoder": engine.embedder.runs_on}
        if chunks == 0:
            body["store"]["hint"] = "The index is empty: POST articles to /v1/documents."
    except Exception as exc:
        reason = _reason(exc, STORE_TIMEOUT)
        body["status"] = "unavailable"
        body["store"] = {"ok": False, "reason": reason}
        body["error"] = {"code": "store_unavailable", "message": f"The store is unreachable: {reason}"}
        return JSONResponse(body, status_code=503)
    configured = state.settings.answer.reader
    if configured in ("", "none"):
        body["reader"] = {"configured": False}
    elif engine.reader is not None:
        body["reader"] = {"configured": True, "ok": True, "name": engine.reader.name}
    else:
        body["reader"] = {"configured": True, "ok": False, "name": configured,
                          "note": "The reader could not be loaded (see the log): answers are judged on the signals."}
    body["database"] = await _database(request, state)
    if engine.llm is None:
        body["llm"] = {"configured": False, "ok": None, "note": "offline extractive answers"}
        body["status"] = "ready"
    else:
        timeout = min(LLM_TIMEOUT, state.settings.llm.timeout)
        try:
            await _run(engine.llm.ping, timeout)
            body["llm"] = {"configured": True, "ok": True, "model": state.settings.llm.model}
            body["status"] = "ready"
        except Exception as exc:
            body["llm"] = {"configured": True, "ok": False, "model": state.settings.llm.model,
                           "reason": _reason(exc, timeout)}
            body["status"] = "degraded"
            body["note"] = "Answers are given offline (extractive) while the LLM is unreachable."
    if not body["database"]["ok"]:
        body["status"] = "degraded"
    return JSONResponse(body)


async def _database(request: Request, state: ServiceState) -> dict[str, Any]:
    """Which database holds the service's state, whether it answers, and (several processes) who runs the jobs."""
    database: Database = request.app.state.database
    out = database.describe()
    try:
        await _run(state.conversations.ping, DATABASE_TIMEOUT)
        out["ok"] = True
    except Exception as exc:
        out |= {"ok": False, "reason": _reason(exc, DATABASE_TIMEOUT),
                "note": "Questions are answered without conversation memory until it is back."}
    runtime = getattr(request.app.state, "runtime", None)
    if database.shared and runtime is not None and runtime.coordination is not None:
        out["jobs"] = {"this_process": runtime.leading, "process": runtime.holder}
        if out["ok"]:
            with contextlib.suppress(Exception):
                out["jobs"]["holder"] = await _run(lambda: runtime.coordination.holder(JOBS), DATABASE_TIMEOUT)
    return out


def _index_size(store: PassageStore) -> tuple[int, int]:
    return store.count_documents(), store.count_chunks()


@router.get("/metrics", summary="Prometheus metrics", dependencies=authenticated,
            response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def metrics(request: Request, metrics: MetricsDep) -> Response:
    # Read at scrape time; absent while starting, and the index size absent while the store is down.
    gauges: dict[str, tuple[str, float]] = {}
    state: ServiceState | None = getattr(request.app.state, "sanad", None)
    if state is not None:
        store = state.engine.store
        try:
            documents, chunks = await _run(lambda: _index_size(store), STORE_TIMEOUT)
            gauges["sanad_index_documents"] = ("Documents in the index.", float(documents))
            gauges["sanad_index_chunks"] = ("Chunks in the index.", float(chunks))
        except Exception:
            gauges["sanad_store_up"] = ("1 if the store answered the last scrape.", 0.0)
        else:
            gauges["sanad_store_up"] = ("1 if the store answered the last scrape.", 1.0)
        sessions = await anyio.to_thread.run_sync(state.conversations.count)
        gauges["sanad_conversations"] = ("Stored conversations.", float(sessions))
    return Response(metrics.render(gauges), media_type=CONTENT_TYPE)
