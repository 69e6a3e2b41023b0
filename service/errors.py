"""One error shape for every failure: ``{"error": {"code": ..., "message": ...}}``.

Validation errors (FastAPI's 422) are reshaped; invalid JSON becomes a 400;
store and embedding outages are 503 with the reason; unknown failures are a
500 with no internals in the body (the traceback goes to the log).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.embedding import EmbeddingError
from rag.store import StoreError, StoreMismatch
from service.database import DatabaseUnavailable

log = logging.getLogger("sanad.service")
DATABASE_MESSAGE = ("Stored conversations are unavailable ({exc}). Questions are still answered, without "
                    "conversation memory.")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class APIError(Exception):
    """Raised by routes for an expected failure; rendered as the JSON error shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (detail.get("ctx") or {}).get("error", "JSON decode error")
        return error_response(400, "invalid_json", f"The request body is not valid JSON: {reason}.")
    details = [{"field": _loc(e.get("loc", ())), "message": str(e.get("msg", "")).removeprefix("Value error, ")}
               for e in errors]
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return error_response(422, "validation_error", "The request body is missing (send a JSON object).",
                              details=details)
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    return error_response(422, "validation_error", message or "Invalid request.", details=details)


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _CODES.get(status, "error")
    if isinstance(exc.detail, str) and exc.detail:
        message = exc.detail
    else:
        message = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    if status == 404 and message == "Not Found":
        message = f"No such endpoint: {request.method} {request.url.path}"
    if status == 413 and not message.startswith("The request body"):  # e.g. the multipart parser's own words
        message = "The request body is too large."
    return error_response(status, code, message, headers=getattr(exc, "headers", None))


def _api(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers, **exc.extra)


def _store(request: Request, exc: Exception) -> JSONResponse:
    log.error("store failure on %s %s: %s", request.method, request.url.path, exc)
    code = "store_mismatch" if isinstance(exc, StoreMismatch) else "store_unavailable"
    return error_response(503, code, str(exc))


def _database(request: Request, exc: Exception) -> JSONResponse:
    log.error("database failure on %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "database_unavailable", DATABASE_MESSAGE.format(exc=exc))


def _embedding(request: Request, exc: Exception) -> JSONResponse:
    log.error("embedding failure on %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "embeddings_unavailable", str(exc))


def _qdrant(request: Request, exc: Exception) -> JSONResponse:
    log.error("Qdrant failure on %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "store_unavailable", f"Qdrant is not reachable: {exc}")


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "Internal error; the server log has the details.")


def store_exception_types() -> tuple[type[Exception], ...]:
    """Exceptions meaning "the store is unreachable" (remote Qdrant down), besides :class:`StoreError`."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    return (ResponseHandlingException, UnexpectedResponse)


def classify(exc: BaseException) -> tuple[int, str, str]:
    """Status, code and message for an exception raised while streaming (no handler runs there)."""
    if isinstance(exc, APIError):
        return exc.status, exc.code, exc.message
    if isinstance(exc, StoreError):
        return 503, "store_unavailable", str(exc)
    if isinstance(exc, EmbeddingError):
        return 503, "embeddings_unavailable", str(exc)
    if isinstance(exc, DatabaseUnavailable):
        return 503, "database_unavailable", DATABASE_MESSAGE.format(exc=exc)
    if isinstance(exc, store_exception_types()):
        return 503, "store_unavailable", f"Qdrant is not reachable: {exc}"
    return 500, "internal_error", "Internal error; the server log has the details."


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(APIError, _api)
    app.add_exception_handler(StoreError, _store)
    app.add_exception_handler(EmbeddingError, _embedding)
    app.add_exception_handler(DatabaseUnavailable, _database)
    for exc_type in store_exception_types():
        app.add_exception_handler(exc_type, _qdrant)
    app.add_exception_handler(Exception, _unexpected)
