"""``/v1/documents``: index an article (JSON or a file upload) while serving, list, delete.

Writes go one at a time (the state's write lock) in a worker thread; a 4xx
leaves the index unchanged.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from index.readers import SUPPORTED, Skipped, read_path
from rag.models import Article
from rag.store import public_record
from service import jsonbody
from service.deps import MetricsDep, StateDep, authenticated
from service.errors import APIError
from service.schemas import (
    DOCUMENT_EXAMPLES,
    DocumentIn,
    DocumentInfo,
    DocumentList,
    DocumentResult,
    IngestResponse,
    SkippedItem,
    error_responses,
)
from service.state import ServiceState

# An archive holds tens of thousands of articles: the list comes a page at a time.
PAGE = 100
MAX_PAGE = 1000

router = APIRouter(prefix="/v1/documents", tags=["documents"], dependencies=authenticated)

# Reasons from index.readers meaning "this is not a text article we can read".
_NOT_TEXT = ("unsupported file type", "binary file", "not UTF-8 text", "no article text found")
_TOO_LARGE = ("too large", "document too long")

_UPLOAD_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": f"One of {', '.join(sorted(SUPPORTED))}. A .txt/.md file's first line is the "
                                "title; a leading 'date YYYY-MM-DD' line is its date. JSONL: one article per line."},
        "id": {"type": "string", "description": "Document id (default: the file name without extension)."},
    },
}


def _safe_name(filename: str) -> str:
    name = Path(filename.replace("\\", "/")).name
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    stem = re.sub(r"\s+", "_", stem.strip()) or "upload"
    return f"{stem}.{suffix}" if suffix else stem


def _read_upload(filename: str, data: bytes, max_bytes: int, doc_id: str | None,
                 fields: dict[str, str] | None = None) -> list[Article | Skipped]:
    name = _safe_name(filename)
    with tempfile.TemporaryDirectory(prefix="sanad-upload-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        items = list(read_path(path, max_bytes, fields))
    out: list[Article | Skipped] = []
    for item in items:
        if isinstance(item, Skipped):
            out.append(Skipped(item.path.replace(str(path), filename), item.reason))
        elif doc_id is not None:
            out.append(Article.model_validate({**item.model_dump(), "id": doc_id}))
        else:
            out.append(item)
    return out


def _index(state: ServiceState, items: list[Article | Skipped]) -> IngestResponse:
    results: list[DocumentResult] = []
    skipped: list[SkippedItem] = []
    # A few articles get their dense vectors now; an archive or feed (many) is searchable at once and its
    # vectors follow in the background, newest first.
    with state.write_lock:
        bulk = state.indexer.defer_arrivals(items)
        for item in items:
            if isinstance(item, Skipped):
                skipped.append(SkippedItem(item=item.path, reason=item.reason))
                continue
            try:
                outcome, chunks = state.indexer.index_article(item, defer_dense=True if bulk else None)
            except ValueError as exc:
                skipped.append(SkippedItem(item=item.id, reason=str(exc)))
                continue
            results.append(DocumentResult(doc_id=item.id, outcome=outcome, chunks=chunks))
    if bulk and state.on_dense_pending is not None:
        state.on_dense_pending()
    return IngestResponse(documents=results, skipped=skipped)


def _not_text(item: SkippedItem) -> APIError | None:
    """A file whose name says text (``report.txt``) but whose bytes are not: say so, rather than ask for a type
    it already has."""
    name = re.sub(r"(:\d+|#\d+)$", "", item.item)  # a JSONL line or a JSON/CSV record names its file
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED:
        return None
    if item.reason.startswith("binary file"):
        return APIError(415, "unsupported_media_type",
                        f"{name} is not text (binary content): its name ends in {suffix}, but it holds something "
                        "else (an image, a PDF, a word-processor file?). Send the article as UTF-8 text.",
                        skipped=1)
    if item.reason.startswith("not UTF-8 text"):
        return APIError(415, "unsupported_media_type",
                        f"{name} is not text in a known encoding (undecodable bytes): save it as UTF-8 text "
                        "and send it again.", skipped=1)
    return None


def _refusal(skipped: list[SkippedItem]) -> APIError:
    reasons = "; ".join(f"{s.item}: {s.reason}" for s in skipped[:5])
    first = skipped[0].reason if skipped else ""
    if len(skipped) == 1 and (not_text := _not_text(skipped[0])):
        return not_text
    if first.startswith(_NOT_TEXT):
        return APIError(415, "unsupported_media_type",
                        f"Not a text article ({reasons}). Send one of {', '.join(sorted(SUPPORTED))}.",
                        skipped=len(skipped))
    if first.startswith(_TOO_LARGE):
        return APIError(413, "document_too_large", f"Nothing indexed: {reasons}.")
    return APIError(400, "nothing_indexed", f"Nothing indexed: {reasons}.")


async def _json_article(request: Request) -> Article:
    raw = await request.body()
    try:
        obj: Any = jsonbody.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(400, "invalid_json", f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(obj, dict):
        raise APIError(422, "validation_error",
                       "Send one article as a JSON object: {id, title, text, date, source, url}.")
    try:
        doc = DocumentIn.model_validate(obj)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    return Article.model_validate(doc.model_dump())


async def _uploaded(request: Request, max_bytes: int, fields: dict[str, str]) -> list[Article | Skipped]:
    form = await request.form(max_files=1, max_fields=10)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise APIError(400, "missing_file", "Send the article in a multipart form field named 'file'.")
        if not upload.filename:
            raise APIError(400, "missing_file", "The uploaded file has no name (its extension picks the reader).")
        doc_id = form.get("id")
        if doc_id is not None and not isinstance(doc_id, str):
            raise APIError(422, "validation_error", "id: must be a string")
        data = await upload.read()
        if len(data) > max_bytes:
            raise APIError(413, "document_too_large", f"The file has {len(data)} bytes; the limit is {max_bytes}.")
        try:
            return await run_in_threadpool(_read_upload, upload.filename, data, max_bytes, doc_id or None, fields)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
    finally:
        await form.close()


@router.post(
    "",
    status_code=201,
    response_model=IngestResponse,
    summary="Index an article (JSON) or an uploaded file",
    responses={200: {"model": IngestResponse, "description": "Every article was already indexed unchanged."},
               **error_responses(400, 401, 413, 415, 422, 429, 503)},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": DocumentIn.model_json_schema(), "examples": DOCUMENT_EXAMPLES},
        "multipart/form-data": {"schema": _UPLOAD_SCHEMA},
    }}},
)
async def add_document(request: Request, response: Response, state: StateDep, metrics: MetricsDep) -> IngestResponse:
    """Adds or replaces articles (201); unchanged ones are skipped (`outcome: unchanged`, and 200 when nothing
    was added or replaced)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    items: list[Article | Skipped]
    if content_type == "multipart/form-data":
        items = await _uploaded(request, state.settings.index.max_file_bytes, state.settings.index.field_map)
    elif content_type in ("application/json", "") or content_type.endswith("+json"):
        items = [await _json_article(request)]
    else:
        raise APIError(415, "unsupported_media_type",
                       f"Content-Type '{content_type}' is not accepted: send application/json (one article) "
                       "or multipart/form-data (a file in the field 'file').")
    result = await run_in_threadpool(_index, state, items)
    if not result.documents:
        raise _refusal(result.skipped)
    for d in result.documents:
        metrics.observe_document(d.outcome)
    if all(d.outcome == "unchanged" for d in result.documents):
        response.status_code = 200  # nothing was created
    return result


@router.get("", response_model=DocumentList, summary="List indexed articles with their chunk counts",
            responses=error_responses(401, 429, 503))
async def list_documents(
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Articles per page, in doc id order.")] = PAGE,
    offset: Annotated[int, Query(ge=0, description="Where the page starts (`next_offset` of the last).")] = 0,
) -> DocumentList:
    records, total = await run_in_threadpool(state.engine.store.documents_page, offset, limit)
    docs = [DocumentInfo.model_validate(public_record(r)) for r in records]
    pending = await run_in_threadpool(state.engine.store.count_dense_pending)
    end = offset + len(docs)
    return DocumentList(documents=docs, total=total, offset=offset, next_offset=end if end < total else None,
                        dense_pending=pending)


@router.get("/{doc_id}", response_model=DocumentInfo, summary="One indexed article's record",
            responses=error_responses(401, 404, 429, 503))
async def get_document(doc_id: str, state: StateDep) -> DocumentInfo:
    record = await run_in_threadpool(state.engine.store.get_document, doc_id)
    if record is None:
        raise APIError(404, "document_not_found", f"No document with id '{doc_id}'.")
    return DocumentInfo.model_validate(public_record(record))


def _delete(state: ServiceState, doc_id: str) -> bool:
    with state.write_lock:
        if state.engine.store.get_document(doc_id) is None:
            return False
        return state.engine.store.delete_document(doc_id)


@router.delete("/{doc_id}", status_code=204, summary="Remove an article and its chunks",
               responses=error_responses(401, 404, 429, 503))
async def delete_document(doc_id: str, state: StateDep) -> Response:
    if not await run_in_threadpool(_delete, state, doc_id):
        raise APIError(404, "document_not_found", f"No document with id '{doc_id}'.")
    return Response(status_code=204)
