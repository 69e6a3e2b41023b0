"""Articles from files: ``.txt``/``.md`` (first non-empty line is the title),
``.html`` (main text via trafilatura, boilerplate dropped), ``.jsonl`` (one
article per line).

Hand-written rather than llama-index's SimpleDirectoryReader because each
bad file must be skipped with a one-line reason (binary, undecodable, empty,
oversized) and a text file's leading ``date YYYY-MM-DD`` line is metadata.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from rag.models import Article

SUPPORTED = {".txt", ".md", ".markdown", ".html", ".htm", ".jsonl"}
_DATE_LINE = re.compile(r"^\s*date[:\s]+(\d{4}-\d{2}-\d{2})\b.*$", re.IGNORECASE)
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)


@dataclass
class Skipped:
    path: str
    reason: str


Outcome = Literal["added", "updated", "unchanged"]


@dataclass
class IndexSummary:
    """What indexing did (``sanad index``, or the server on its behalf)."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def documents(self) -> int:
        return self.added + self.updated + self.unchanged

    def count(self, outcome: Outcome, chunks: int) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        self.chunks += chunks


def iter_files(paths: list[Path]) -> Iterator[Path]:
    """Files under ``paths`` (folders walked recursively, sorted), hidden ones left out."""
    for path in paths:
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(path).parts):
                    yield f
        else:
            yield path


def _reads_as_text(text: str) -> bool:
    sample = text[:20000]
    letters = sum(ch.isalpha() or ch.isspace() for ch in sample)
    controls = sum(unicodedata.category(ch) == "Cc" and ch not in "\r\n\t" for ch in sample)
    return letters >= 0.7 * len(sample) and controls <= 0.01 * len(sample)


def _decode(raw: bytes) -> str:
    utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")  # UTF-16 text has NUL bytes: check the BOM first
    if b"\x00" in raw[:8192] and not utf16:
        raise ValueError("binary file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("utf-16") if utf16 else raw.decode("cp1256")
        except UnicodeDecodeError:
            raise ValueError("not UTF-8 text (undecodable)") from None
        # Windows-1256 (older Arabic sites) decodes any bytes; only accept it when it reads as text.
        if not utf16 and not _reads_as_text(text):
            raise ValueError("not UTF-8 text (undecodable)") from None
    if not text.strip():
        raise ValueError("empty")
    return text


def _parse_date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def article_from_text(doc_id: str, text: str, markdown: bool = False) -> Article:
    """Title from the first non-empty line; a leading ``date YYYY-MM-DD`` line or front matter gives the date."""
    meta: dict[str, str] = {}
    body = text
    if markdown and (m := _FRONT_MATTER.match(text)):
        for line in m.group(1).splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                meta[k.strip().lower()] = v.strip().strip("\"'")
        body = text[m.end() :]  # the title is looked for after the front matter
    lines = body.splitlines()
    when = _parse_date(meta.get("date"))
    title = meta.get("title", "")
    for line in lines:
        if not line.strip() or (markdown and line.strip() == "---"):
            continue
        if when is None and (dm := _DATE_LINE.match(line)):
            when = _parse_date(dm.group(1))
            continue
        if not title:
            title = line.strip().lstrip("#").strip()
        break
    return Article(id=doc_id, title=title[:300], text=text, date=when, source=meta.get("source"), url=meta.get("url"),
                   body_start=len(text) - len(body))


def article_from_html(doc_id: str, html: str) -> Article:
    import trafilatura

    text = trafilatura.extract(html, include_comments=False, include_tables=False, favor_precision=True)
    if not text or not text.strip():
        raise ValueError("no article text found in the HTML")
    meta = trafilatura.extract_metadata(html)
    title = (meta.title if meta else None) or text.strip().splitlines()[0]
    return Article(
        id=doc_id,
        title=title[:300],
        text=text,
        date=_parse_date(meta.date if meta else None),
        source=meta.sitename if meta else None,
        url=meta.url if meta else None,
    )


def _jsonl_lines(path: Path) -> Iterator[str | None]:
    """Lines of a JSONL file, read one at a time (``None`` for a line that is not UTF-8)."""
    with path.open("rb") as f:
        for i, raw in enumerate(f):
            try:
                yield raw.decode("utf-8-sig" if i == 0 else "utf-8")
            except UnicodeDecodeError:
                yield None


def articles_from_jsonl(path: Path, text: str | Iterable[str | None]) -> Iterator[Article | Skipped]:
    lines = text.splitlines() if isinstance(text, str) else text
    for lineno, line in enumerate(lines, 1):
        if line is None:
            yield Skipped(f"{path}:{lineno}", "not UTF-8 text (undecodable)")
            continue
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            unknown = set(obj) - {"id", "title", "text", "date", "source", "url"}
            if unknown:
                raise ValueError(f"unknown field(s) {sorted(unknown)}")
            yield Article.model_validate({k: v for k, v in obj.items() if v is not None})
        except (ValueError, ValidationError, TypeError) as exc:
            msg = (
                exc.errors()[0]["loc"][0].__str__() + ": " + exc.errors()[0]["msg"]
                if isinstance(exc, ValidationError)
                else str(exc)
            )
            yield Skipped(where, msg)


def read_path(path: Path, max_bytes: int) -> Iterator[Article | Skipped]:
    """Articles from one file, or a reason it was skipped; never raises for bad input."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        yield Skipped(str(path), f"unsupported file type '{suffix or path.name}'")
        return
    if suffix == ".jsonl":
        # A collection of articles, streamed line by line: the size limit is per article
        # (IndexSettings.max_document_chars), not per file.
        try:
            with path.open("rb") as f:
                head = f.read(8192)
            if b"\x00" in head:
                yield Skipped(str(path), "binary file")
                return
            if not head.strip():
                yield Skipped(str(path), "empty")
                return
            yield from articles_from_jsonl(path, _jsonl_lines(path))
        except OSError as exc:
            yield Skipped(str(path), f"unreadable: {exc.strerror or exc}")
        return
    try:
        size = path.stat().st_size
        if size > max_bytes:
            yield Skipped(str(path), f"too large ({size} bytes > {max_bytes})")
            return
        text = _decode(path.read_bytes())
    except OSError as exc:
        yield Skipped(str(path), f"unreadable: {exc.strerror or exc}")
        return
    except ValueError as exc:
        yield Skipped(str(path), str(exc))
        return
    try:
        if suffix in (".html", ".htm"):
            yield article_from_html(path.stem, text)
        else:
            yield article_from_text(path.stem, text, markdown=suffix in (".md", ".markdown"))
    except (ValueError, ValidationError) as exc:
        yield Skipped(str(path), str(exc).splitlines()[0])
