"""A small, real Qdrant-compatible HTTP server for tests.

There is no Qdrant server binary here (none ships on PyPI or npm), so this
serves the part of Qdrant's REST API that ``QdrantClient(url=...)`` uses for
Sanad's calls. Request bodies are parsed with qdrant-client's own REST models
(``qdrant_client.http.models``) and executed on an in-process
``QdrantClient(":memory:")`` (local mode); responses have Qdrant's envelope
``{"result": ..., "status": "ok", "time": ...}`` and errors
``{"status": {"error": ...}, "time": ...}``. Endpoints it does not serve answer
404 with a message naming the method and path, so a missing piece is obvious.

Usage::

    with run_fake_qdrant() as url:
        client = QdrantClient(url=url, prefer_grpc=False)

    fake = FakeQdrant()          # stop and restart on the same port
    url = fake.start()
    fake.stop()                  # connections are refused; the data is kept
    fake.start()                 # same url, same data
    fake.close()

Served: ``GET /`` (version info), ``/healthz``, ``/livez``, ``/readyz``;
``GET /collections``; ``GET|PUT|DELETE /collections/{name}``;
``GET /collections/{name}/exists``; and under ``/collections/{name}/points``:
``PUT`` (upsert), ``POST`` (retrieve), ``GET /{id}``, ``POST /scroll``,
``/delete``, ``/count``, ``/query``, ``/query/batch``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter, ValidationError
from qdrant_client import QdrantClient
from qdrant_client.http import models as m

from tests.servers import ThreadedServer

_CLIENT_VERSION = importlib.metadata.version("qdrant-client")
#: Reported by ``GET /``: the client's own major.minor, so its compatibility check stays quiet.
SERVER_VERSION = ".".join(_CLIENT_VERSION.split(".")[:2] + ["0"])


class QdrantHTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _dump(value: Any) -> Any:
    """REST models (and lists/dicts of them) to JSON-ready data, as Qdrant sends it."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def _flag(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    return None if raw is None else raw.lower() == "true"


class FakeQdrant:
    """The server's state (an in-memory local-mode Qdrant) and its uvicorn runner.

    The backend outlives :meth:`stop`, like a server with persistent storage;
    :meth:`reset` empties it. ``requests`` records ``(method, path)`` of every request.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.backend = QdrantClient(location=":memory:")
        self.requests: list[tuple[str, str]] = []
        #: Payload indexes asked for, per collection: field -> schema.
        self.indexes: dict[str, dict[str, str]] = {}
        self.app = create_app(self)
        self._server = ThreadedServer(self.app, host=host, port=port, name="fake-qdrant")

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def running(self) -> bool:
        return self._server.running

    def reset(self) -> None:
        self.backend.close()
        self.backend = QdrantClient(location=":memory:")
        self.requests.clear()

    def paths(self, method: str | None = None) -> list[str]:
        return [p for meth, p in self.requests if method is None or meth == method]

    # -- lifecycle -------------------------------------------------------
    def start(self, startup_timeout: float = 10.0) -> str:
        """Serve on ``host:port`` (a free port the first time, the same one after); return the URL."""
        return self._server.start(startup_timeout)

    def stop(self) -> None:
        """Stop serving (connections to the port are refused); the data is kept."""
        self._server.stop()

    def close(self) -> None:
        self.stop()
        self.backend.close()

    def __enter__(self) -> FakeQdrant:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def run_fake_qdrant(fake: FakeQdrant | None = None) -> Iterator[str]:
    """Serve a fake Qdrant on 127.0.0.1 (free port) in a thread; yield its URL."""
    fake = fake or FakeQdrant()
    url = fake.start()
    try:
        yield url
    finally:
        fake.close()


# --------------------------------------------------------------------------- app


def create_app(fake: FakeQdrant) -> FastAPI:
    app = FastAPI(title="fake-qdrant", docs_url=None, redoc_url=None, openapi_url=None)

    def ok(result: Any, t0: float) -> JSONResponse:
        return JSONResponse({"result": _dump(result), "status": "ok", "time": time.perf_counter() - t0})

    async def body(request: Request, model: Any) -> Any:
        """Parse the JSON body with a qdrant-client REST model (or a Union of them)."""
        raw = await request.body()
        try:
            return TypeAdapter(model).validate_json(raw or b"{}")
        except ValidationError as exc:
            raise QdrantHTTPError(400, f"Format error in JSON body: {exc}") from None

    def need(name: str) -> None:
        if not fake.backend.collection_exists(name):
            raise QdrantHTTPError(404, f"Not found: Collection `{name}` doesn't exist!")

    @app.middleware("http")
    async def record(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        fake.requests.append((request.method, request.url.path))
        return await call_next(request)

    @app.exception_handler(QdrantHTTPError)
    async def qdrant_error(request: Request, exc: QdrantHTTPError) -> JSONResponse:
        return JSONResponse({"status": {"error": exc.message}, "time": 0.0}, exc.status)

    @app.exception_handler(ValueError)
    async def local_mode_error(request: Request, exc: ValueError) -> JSONResponse:
        # What local mode raises for a bad request, e.g. an unknown vector name.
        text = str(exc)
        status = 404 if "not found" in text.lower() else 409 if "already exists" in text else 400
        return JSONResponse({"status": {"error": f"Wrong input: {text}"}, "time": 0.0}, status)

    # -- service ---------------------------------------------------------------
    @app.get("/")
    async def root() -> JSONResponse:
        return JSONResponse({"title": "qdrant - vector search engine (fake)", "version": SERVER_VERSION})

    @app.get("/healthz")
    @app.get("/livez")
    @app.get("/readyz")
    async def health() -> JSONResponse:
        return JSONResponse({"title": "healthz check passed"})

    # -- collections -------------------------------------------------------------
    @app.get("/collections")
    async def list_collections() -> JSONResponse:
        t0 = time.perf_counter()
        return ok(fake.backend.get_collections(), t0)

    @app.get("/collections/{name}/exists")
    async def collection_exists(name: str) -> JSONResponse:
        t0 = time.perf_counter()
        return ok(m.CollectionExistence(exists=fake.backend.collection_exists(name)), t0)

    @app.get("/collections/{name}")
    async def get_collection(name: str) -> JSONResponse:
        t0 = time.perf_counter()
        need(name)
        return ok(fake.backend.get_collection(name), t0)

    @app.put("/collections/{name}")
    async def create_collection(name: str, request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        req: m.CreateCollection = await body(request, m.CreateCollection)
        if fake.backend.collection_exists(name):
            raise QdrantHTTPError(409, f"Wrong input: Collection `{name}` already exists!")
        done = fake.backend.create_collection(
            name,
            vectors_config=req.vectors if req.vectors is not None else {},
            sparse_vectors_config=req.sparse_vectors,
            metadata=req.metadata,
        )
        return ok(done, t0)

    @app.delete("/collections/{name}")
    async def delete_collection(name: str) -> JSONResponse:
        t0 = time.perf_counter()
        return ok(fake.backend.delete_collection(name), t0)

    @app.put("/collections/{name}/index")
    async def create_index(name: str, request: Request) -> JSONResponse:
        """Payload index: accepted and recorded; the in-memory backend needs none to filter."""
        t0 = time.perf_counter()
        req: m.CreateFieldIndex = await body(request, m.CreateFieldIndex)
        need(name)
        fake.indexes.setdefault(name, {})[req.field_name] = str(req.field_schema)
        return ok(m.UpdateResult(operation_id=0, status=m.UpdateStatus.COMPLETED), t0)

    # -- points ------------------------------------------------------------------
    @app.put("/collections/{name}/points")
    async def upsert_points(name: str, request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        req: m.PointsList | m.PointsBatch = await body(request, m.PointInsertOperations)
        need(name)
        points = req.points if isinstance(req, m.PointsList) else req.batch
        wait = _flag(request, "wait")
        result = fake.backend.upsert(name, points=points, wait=bool(wait), update_filter=req.update_filter)
        if not wait:
            result = m.UpdateResult(operation_id=result.operation_id, status=m.UpdateStatus.ACKNOWLEDGED)
        return ok(result, t0)

    @app.post("/collections/{name}/points")
    async def retrieve_points(name: str, request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        req: m.PointRequest = await body(request, m.PointRequest)
        need(name)
        records = fake.backend.retrieve(
            name,
            ids=req.ids,
            with_payload=True if req.with_payload is None else req.with_payload,
            with_vectors=False if req.with_vector is None else req.with_vector,
        )
        return ok(records, t0)

    @app.get("/collections/{name}/points/{point_id}")
    async def get_point(name: str, point_id: str) -> JSONResponse:
        t0 = time.perf_counter()
        need(name)
        pid: int | str = int(point_id) if point_id.isdigit() else point_id
        found = fake.backend.retrieve(name, ids=[pid], with_payload=True, with_vectors=True)
        if not found:
            raise QdrantHTTPError(404, f"Not found: No point with id {point_id} found")
        return ok(found[0], t0)

    @app.post("/collections/{name}/points/scroll")
    async def scroll_points(name: str, request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        req: m.ScrollRequest = await body(request, m.ScrollRequest)
        need(name)
        points, next_offset = fake.backend.scroll(
            name,
            scroll_filter=req.filter,
            limit=10 if req.limit is None else req.limit,
            offset=req.offset,
            order_by=req.order_by,
            with_payload=True if req.with_payload is None else req.with_payload,
            with_vectors=False if req.with_vector is None else req.with_vector,
        )
        return ok(m.ScrollResult(points=points, next_page_offset=next_offset), t0)

    @app.post("/collections/{name}/points/delete")
    async def delete_points(name: str, request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        req: m.PointIdsList | m.FilterSelector = await body(request, m.PointsSelector)
        need(name)
        wait = _flag(request, "wait")
        result = fake.backend.delete(name, points_selector=req, wait=bool(wait))
        if not wait:
            result = m.UpdateResult(operation_id=result.operation_id, status=m.UpdateStatus.ACKNOWLEDGED)
        return ok(result, t0)

    @app.post("/collections/{name}/points/count")
    async def count_points(name: str, request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        req: m.CountRequest = await body(request, m.CountRequest)
        need(name)
        return ok(fake.backend.count(name, count_filter=req.filter, exact=req.exact is not False), t0)

    def run_query(name: str, req: m.QueryRequest) -> m.QueryResponse:
        # The server's defaults: no payload and no vectors unless asked for.
        req = req.model_copy(update={
            "with_payload": False if req.with_payload is None else req.with_payload,
            "with_vector": False if req.with_vector is None else req.with_vector,
        })
        return fake.backend.query_batch_points(name, [req])[0]

    @app.post("/collections/{name}/points/query")
    async def query_points(name: str, request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        req: m.QueryRequest = await body(request, m.QueryRequest)
        need(name)
        return ok(run_query(name, req), t0)

    @app.post("/collections/{name}/points/query/batch")
    async def query_batch(name: str, request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        req: m.QueryRequestBatch = await body(request, m.QueryRequestBatch)
        need(name)
        return ok([run_query(name, r) for r in req.searches], t0)

    # -- everything else -----------------------------------------------------------
    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def not_implemented(path: str, request: Request) -> JSONResponse:
        return JSONResponse(
            {"status": {"error": f"fake Qdrant does not implement {request.method} /{path}"}, "time": 0.0},
            status_code=404,
        )

    return app
