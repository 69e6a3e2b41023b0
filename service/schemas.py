"""Request and response models, with Arabic and English examples for ``/docs``.

The answer itself is :class:`rag.models.Answer`, returned as is.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from rag.models import Article, Passage, SearchFilters

# -- examples -------------------------------------------------------------------

AR_QUESTION = "من شارك في الاجتماع الأمني الذي استضافته القاهرة؟"
AR_FOLLOW_UP = "ومتى عقد؟"
EN_QUESTION = "Who took part in the emergency security meeting held in Cairo?"

AR_ANSWER: dict[str, Any] = {
    "answer": "استضافت القاهرة اليوم الثلاثاء اجتماعًا أمنيًا رفيع المستوى جمع كبار المسؤولين ورؤساء أجهزة "
              "المخابرات في مصر وقطر وتركيا [1]",
    "language": "ar",
    "answerable": True,
    "citations": [{
        "n": 1, "doc_id": "003_046bdc7566d0cd7e", "title": "اجتماع طارئ -القاهرة – 25 نوفمبر 2025",
        "chunk_id": "0b5e2a53-3c1f-5f0e-9d0a-4f1f3c2f7a11",
        "text": "استضافت القاهرة اليوم الثلاثاء اجتماعًا أمنيًا رفيع المستوى ...",
        "quote": "استضافت القاهرة اليوم الثلاثاء اجتماعًا أمنيًا رفيع المستوى جمع كبار المسؤولين ورؤساء أجهزة "
                 "المخابرات في مصر وقطر وتركيا، الدول الثلاث الراعية لاتفاق وقف إطلاق النار في قطاع غزة.",
        "start": 40, "end": 213,
    }],
    "session_id": "6f1c9d0e2b7a4c55a1e3f9b8d2c4e6a0",
    "rewritten_question": None,
    "degraded": False,
    "answerer": "extractive",
    "confident": True,
}
EN_ANSWER: dict[str, Any] = {
    "answer": "The articles (in Arabic) say: «استضافت القاهرة اليوم الثلاثاء اجتماعًا أمنيًا رفيع المستوى ...» [1]",
    "language": "en",
    "answerable": True,
    "citations": AR_ANSWER["citations"],
    "session_id": "0d9a7e3c5b1f4a2e8c6d4b2a0f9e7c5a",
    "rewritten_question": None,
    "degraded": False,
    "answerer": "extractive",
    "confident": True,
}
REFUSAL_EXAMPLE: dict[str, Any] = {
    "answer": "لا تتضمن المقالات المتاحة إجابة عن هذا السؤال.", "language": "ar", "answerable": False,
    "citations": [], "session_id": "6f1c9d0e2b7a4c55a1e3f9b8d2c4e6a0", "rewritten_question": None,
    "degraded": False, "answerer": "extractive", "confident": True,
}

ANSWER_EXAMPLES = {
    "arabic": {"summary": "Arabic answer with a citation", "value": AR_ANSWER},
    "english": {"summary": "English question, Arabic quotes", "value": EN_ANSWER},
    "refusal": {"summary": "Not in the articles", "value": REFUSAL_EXAMPLE},
}

SSE_EXAMPLE = (
    'event: passages\ndata: [{"n": 1, "doc_id": "003_046bdc7566d0cd7e", "title": "...", "quote": "...", ...}]\n\n'
    'event: delta\ndata: {"text": "استضافت القاهرة اليوم الثلاثاء ... [1]"}\n\n'
    'event: answer\ndata: {"answer": "...", "citations": [...], "session_id": "...", ...}\n\n'
    "event: done\ndata: {}\n\n"
)


# -- common -------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(examples=["validation_error"])
    message: str = Field(examples=["question: the question is empty"])


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Invalid JSON or an unusable upload", 401: "Missing or wrong API key", 404: "Unknown id",
        413: "Request body too large", 415: "The upload is not a text article", 422: "Invalid fields",
        429: "Rate limit exceeded (see Retry-After)", 503: "The store is unreachable",
    }
    return {s: {"model": ErrorResponse, "description": described.get(s, "Error")} for s in statuses}


class Filters(SearchFilters):
    """Restrict retrieval to some articles or a date range (inclusive)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"doc_ids": ["003_046bdc7566d0cd7e"]}, {"date_from": "2025-11-01", "date_to": "2025-11-30"}]
    })

    doc_ids: list[StrictStr] | None = Field(default=None, max_length=1000)
    date_from: date | None = None
    date_to: date | None = None


# -- chat ----------------------------------------------------------------------------


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"question": AR_QUESTION},
        {"question": AR_FOLLOW_UP, "session_id": "6f1c9d0e2b7a4c55a1e3f9b8d2c4e6a0", "stream": True},
        {"question": EN_QUESTION, "top_k": 5, "filters": {"date_from": "2025-11-01"}},
    ]})

    question: StrictStr = Field(description="Arabic or English; leading and trailing spaces are ignored. "
                                            "At most SANAD_SERVICE__MAX_QUESTION_CHARS characters.")
    session_id: StrictStr | None = Field(default=None, min_length=1, max_length=128,
                                         description="Continue this conversation; omit to start a new one.")
    top_k: StrictInt | None = Field(default=None, ge=1, le=50, description="Passages to retrieve.")
    filters: Filters | None = None
    stream: StrictBool = Field(default=False, description="Answer as server-sent events.")


CHAT_EXAMPLES = {
    "arabic": {"summary": "Arabic question (new conversation)", "value": {"question": AR_QUESTION}},
    "follow_up": {"summary": "Arabic follow-up in a conversation",
                  "value": {"question": AR_FOLLOW_UP, "session_id": "6f1c9d0e2b7a4c55a1e3f9b8d2c4e6a0"}},
    "english": {"summary": "English question", "value": {"question": EN_QUESTION}},
    "streaming": {"summary": "Streamed as server-sent events", "value": {"question": AR_QUESTION, "stream": True}},
    "filtered": {"summary": "Only some articles / dates",
                 "value": {"question": AR_QUESTION, "top_k": 3,
                           "filters": {"doc_ids": ["003_046bdc7566d0cd7e"], "date_from": "2025-11-01"}}},
}


# -- search ----------------------------------------------------------------------------


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: StrictStr = Field(description="Arabic or English search text.")
    top_k: StrictInt | None = Field(default=None, ge=1, le=50)
    filters: Filters | None = None

    @field_validator("query")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the query is empty")
        return value


SEARCH_EXAMPLES = {
    "arabic": {"summary": "Arabic query", "value": {"query": "اجتماع القاهرة الأمني", "top_k": 3}},
    "english": {"summary": "English query (names are matched across scripts)",
                "value": {"query": "Hakan Fidan", "top_k": 3}},
}


class SearchResponse(BaseModel):
    query: str
    passages: list[Passage] = Field(description="Best first.")


# -- documents --------------------------------------------------------------------------


class DocumentIn(Article):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": "siwa-dates-2025", "title": "انطلاق مهرجان التمور في واحة سيوة",
        "text": "انطلاق مهرجان التمور في واحة سيوة\nانطلقت اليوم فعاليات مهرجان التمور السنوي في واحة سيوة ...",
        "date": "2025-10-14", "source": "example", "url": "https://example.com/siwa",
    }]})


DOCUMENT_EXAMPLES = {
    "arabic": {"summary": "Arabic article", "value": {
        "id": "siwa-dates-2025", "title": "انطلاق مهرجان التمور في واحة سيوة",
        "text": "انطلاق مهرجان التمور في واحة سيوة\nانطلقت اليوم فعاليات مهرجان التمور السنوي في واحة سيوة "
                "بمشاركة أكثر من مئة منتج.",
        "date": "2025-10-14", "source": "example"}},
    "english": {"summary": "English article", "value": {
        "id": "alexandria-grain-terminal", "title": "Port of Alexandria opens new grain terminal",
        "text": "The Port of Alexandria opened a new grain terminal on Wednesday. "
                "It can store 300,000 tonnes of wheat.",
        "date": "2025-12-03"}},
}


class DocumentResult(BaseModel):
    doc_id: str
    outcome: Literal["added", "updated", "unchanged"]
    chunks: int


class SkippedItem(BaseModel):
    item: str
    reason: str


class IngestResponse(BaseModel):
    documents: list[DocumentResult]
    skipped: list[SkippedItem] = Field(default_factory=list)


class DocumentInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    doc_id: str
    title: str = ""
    date: str | None = None
    source: str | None = None
    url: str | None = None
    chunks: int = 0
    chars: int | None = None
    indexed_at: str | None = None


class DocumentList(BaseModel):
    documents: list[DocumentInfo]
    total: int = Field(description="Articles in the index (all pages).")
    offset: int = 0
    next_offset: int | None = Field(default=None, description="Pass as `offset` for the next page; null on the last.")
    dense_pending: int = Field(default=0, description="Chunks whose dense vector is still being filled in "
                               "(newest first); meanwhile those chunks are ranked by their lexical score.")


# -- sessions -----------------------------------------------------------------------------


class SessionTurn(BaseModel):
    index: int
    role: Literal["user", "assistant"]
    content: str
    created_at: str
    rewritten_question: str | None = Field(default=None, description="User turns: what was searched.")
    answer: dict[str, Any] | None = Field(default=None, description="Assistant turns: the whole answer object.")


class Session(BaseModel):
    id: str
    created_at: str
    updated_at: str
    turns: list[SessionTurn]


class SessionSummary(BaseModel):
    id: str
    created_at: str
    updated_at: str
    turns: int
    first_question: str | None = None


class SessionList(BaseModel):
    sessions: list[SessionSummary]


# -- OpenAI-compatible ------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = "text"
    text: str | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: StrictStr
    content: StrictStr | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type in ("text", "input_text"))
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat-completions request; generation parameters are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr | None = "sanad"
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    # Sanad extras (ignored by other servers).
    top_k: StrictInt | None = Field(default=None, ge=1, le=50)
    filters: Filters | None = None
    sources: StrictBool | None = Field(default=None, description="End the content with a sources block "
                                       "(default: SANAD_SERVICE__SOURCES_IN_CONTENT, on); false for clients that "
                                       "read `citations`.")


COMPLETION_EXAMPLES = {
    "arabic": {"summary": "Arabic, two turns", "value": {"model": "sanad", "messages": [
        {"role": "user", "content": AR_QUESTION},
        {"role": "assistant", "content": AR_ANSWER["answer"]},
        {"role": "user", "content": AR_FOLLOW_UP},
    ]}},
    "english": {"summary": "English, streamed", "value": {"model": "sanad", "stream": True, "messages": [
        {"role": "user", "content": EN_QUESTION}]}},
}
