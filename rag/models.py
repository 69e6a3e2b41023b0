"""The domain objects: articles in, passages retrieved, answers with citations out."""

from __future__ import annotations

from datetime import date as Date
from typing import Literal

from pydantic import BaseModel, Field, model_validator

Language = Literal["ar", "en"]


class Article(BaseModel):
    """One source document as read from a file, a JSONL line or the API."""

    id: str = Field(min_length=1, max_length=200, pattern=r"^[^\s/\\]+$")
    title: str = ""
    text: str = Field(min_length=1)
    date: Date | None = None
    source: str | None = None
    url: str | None = None
    author: str | None = None
    # Where the article's body starts in ``text`` (after Markdown front matter): only the body is
    # chunked, and offsets still count from the start of the original file.
    body_start: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _body_inside_text(self) -> Article:
        if self.body_start >= len(self.text):
            raise ValueError("body_start must be inside text")
        return self


class Passage(BaseModel):
    """A retrieved chunk of an article, with where it sits in the original text."""

    chunk_id: str
    doc_id: str
    title: str = ""
    text: str
    start: int
    end: int
    # Sentence spans relative to ``text``; quotes are cut on these.
    sentences: list[tuple[int, int]] = Field(default_factory=list)
    date: str | None = None
    source: str | None = None
    url: str | None = None
    story_id: str | None = None  # syndicated copies of one story share it (index/stories.py)
    score: float = 0.0


class AlsoIn(BaseModel):
    """Another article carrying a cited passage: a syndicated copy of the same story."""

    doc_id: str
    title: str = ""
    source: str | None = None
    url: str | None = None
    date: str | None = None


class Citation(BaseModel):
    """What an ``[n]`` marker in an answer points at: an exact quote and its offsets."""

    n: int
    doc_id: str
    title: str
    chunk_id: str
    text: str = Field(description="The whole retrieved passage.")
    quote: str = Field(description="The exact supporting sentence(s) from the article.")
    start: int = Field(description="Offset of the quote in the original article text.")
    end: int
    date: str | None = Field(default=None, description="The article's date (ISO), when known.")
    source: str | None = Field(default=None, description="The outlet that published it, when known.")
    url: str | None = Field(default=None, description="The article's address, when known.")
    also_in: list[AlsoIn] = Field(default_factory=list, description="Other articles that carry the same passage "
                                  "(the same wire story in other outlets).")


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    # For an answer: the documents it cited (a follow-up is first looked for there).
    doc_ids: list[str] = Field(default_factory=list)


class Answer(BaseModel):
    answer: str
    language: Language
    answerable: bool
    citations: list[Citation] = Field(default_factory=list)
    session_id: str | None = None
    rewritten_question: str | None = None
    degraded: bool = False
    answerer: Literal["extractive", "llm"] = "extractive"
    # False: the articles may not answer this directly; the quotes are the closest they come (offline answers
    # close to the refusal line, see AnswerSettings.hedge_same).
    confident: bool = True
    # The reader that judged the sentences (its versioned name, e.g. "reader-cross-1"), so that answers judged by
    # different readers are never mixed silently; None when none read them (off, failed, or not used there).
    reader: str | None = None


class SearchFilters(BaseModel):
    doc_ids: list[str] | None = None
    date_from: Date | None = None
    date_to: Date | None = None
