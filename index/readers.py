"""Articles from files: ``.txt``/``.md`` (first non-empty line is the title),
``.html`` (main text via trafilatura, boilerplate dropped), and collections of
articles: ``.jsonl`` (one per line), ``.json`` (an array of objects, or one),
``.csv`` (a header row), RSS/Atom feeds (``index.feeds``) and ``.zip`` archives
of any of these, read member by member without extracting anything to disk.

Hand-written rather than llama-index's SimpleDirectoryReader because each
bad file must be skipped with a one-line reason (binary, undecodable, empty,
oversized) and a text file's leading ``date YYYY-MM-DD`` line is metadata.

Records (JSON, JSONL, CSV) name their fields in many ways: the names in
``FIELD_NAMES`` are recognised (case, ``_`` and ``-`` aside), others are mapped
with ``SANAD_INDEX__FIELDS`` / ``sanad index --fields``; unknown fields are
ignored. A record without an id gets a stable one (from its GUID or URL, else
the file name and its position), so indexing an archive again finds its
articles unchanged.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal
from urllib.parse import urlsplit

from pydantic import ValidationError

from rag.models import Article

_TEXT = {".txt", ".md", ".markdown", ".html", ".htm"}
_FEEDS = {".rss", ".atom", ".xml"}
# Files that hold any number of articles (progress is counted in articles, not files).
COLLECTIONS = {".jsonl", ".json", ".csv", ".zip"} | _FEEDS
SUPPORTED = _TEXT | COLLECTIONS
# A collection is streamed, so its size is not limited by max_bytes; one of its lines, JSON elements, feeds
# or archive members may be this many times max_bytes (what a zip bomb inflates to stops there).
COLLECTION_FACTOR = 50

# Record field names recognised for each article field, compared without case, "_" and "-".
FIELD_NAMES: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "title": ("title", "headline"),
    "text": ("text", "content", "body", "article"),
    "date": ("date", "published", "published_at", "pubDate", "date_published", "date_extracted"),
    "url": ("url", "link"),
    "source": ("source", "outlet", "publisher", "site"),
    "author": ("author", "byline"),
}
_NAMES = {**FIELD_NAMES, "guid": ("guid",)}  # a GUID is hashed into an id (it is often a URL)
# Objects that wrap the array of articles (NewsAPI's {"articles": [...]}, {"items": [...]}, ...).
_WRAPPERS = ("articles", "items", "data", "entries", "records", "documents", "posts")

_DATE_LINE = re.compile(r"^\s*date[:\s]+(\d{4}-\d{2}-\d{2})\b.*$", re.IGNORECASE)
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
_ID = re.compile(r"^[^\s/\\]{1,200}$")  # rag.models.Article.id
_JSON_CHUNK = 1 << 16


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


def collection_limit(max_bytes: int) -> int:
    """The most one line, JSON element, feed or archive member of a collection may hold."""
    return max_bytes * COLLECTION_FACTOR


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


def parse_date(value: object) -> date | None:
    """The day of an ISO date or date-time (``YYYY-MM-DD hh:mm:ss`` too), an RFC 2822 date (feeds) or a Unix
    time; ``None`` for anything else (an unreadable date does not cost the article)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value  # milliseconds
        try:
            return datetime.fromtimestamp(seconds, UTC).date()
        except (ValueError, OverflowError, OSError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).date()  # the day as the publisher wrote it, in its time zone
    except (TypeError, ValueError, IndexError):
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
    when = parse_date(meta.get("date"))
    title = meta.get("title", "")
    for line in lines:
        if not line.strip() or (markdown and line.strip() == "---"):
            continue
        if when is None and (dm := _DATE_LINE.match(line)):
            when = parse_date(dm.group(1))
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
        date=parse_date(meta.date if meta else None),
        source=meta.sitename if meta else None,
        url=meta.url if meta else None,
    )


# Ids -----------------------------------------------------------------------------------------------------------


def clean_id(name: str) -> str:
    """``name`` as a document id: whitespace and slashes become ``_``."""
    return re.sub(r"[\s/\\]+", "_", name).strip("_")[:200] or "doc"


def _id_prefix(source: str | None, url: str | None) -> str:
    """A short readable prefix: the outlet when it is one word (``aawsat``), else the URL's host."""
    source = (source or "").strip().lower()
    if re.fullmatch(r"[\w.-]{1,40}", source):
        return source
    try:
        host = urlsplit(url).hostname if url else None
    except ValueError:
        host = None
    if host:
        return host.removeprefix("www.")[:60]
    return re.sub(r"[^\w.-]+", "-", source).strip("-")[:40] or "doc"


def hashed_id(key: str, prefix: str) -> str:
    return f"{prefix}-{hashlib.sha1(key.strip().encode()).hexdigest()[:16]}"


def stable_id(position_id: str, doc_id: str | None = None, guid: str | None = None, url: str | None = None,
              source: str | None = None) -> str:
    """The record's own id when it is a valid one; else a hash of its id, GUID or URL; else ``position_id``
    (file name and place in the file). The same record always gets the same id."""
    if doc_id and _ID.match(doc_id):
        return doc_id
    for key in (doc_id, guid):
        if key:
            return hashed_id(key, _id_prefix(source, key if "://" in key else url))
    if url:
        return hashed_id(url, _id_prefix(source, url))
    return position_id


def _position_id(stem: str, n: int) -> str:
    return f"{clean_id(stem)[:180]}-{n:06d}"


# Records -------------------------------------------------------------------------------------------------------


def _norm(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name).lower()


def _as_str(value: Any) -> str | None:
    """A field as text: numbers as written, an object by its ``name`` (NewsAPI's source), a list joined."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return _as_str(value.get("name"))
    if isinstance(value, list):
        parts = [s for s in map(_as_str, value) if s and s.strip()]
        return ", ".join(parts) or None
    return None


def _one_line(value: str | None, limit: int = 300) -> str:
    return " ".join((value or "").split())[:limit]


def make_article(where: str, position_id: str, *, text: str, title: str | None = None, date: date | None = None,
                 url: str | None = None, source: str | None = None, author: str | None = None,
                 doc_id: str | None = None, guid: str | None = None) -> Article | Skipped:
    """An article from its fields, or why not: ``empty`` text, or the first validation error."""
    if not text.strip():
        return Skipped(where, "empty")
    url = (url or "").strip() or None
    source = _one_line(source, 200) or None
    try:
        return Article(id=stable_id(position_id, (doc_id or "").strip(), (guid or "").strip(), url, source),
                       title=_one_line(title), text=text, date=date, source=source, url=url,
                       author=_one_line(author, 200) or None)
    except ValidationError as exc:
        first = exc.errors()[0]
        return Skipped(where, f"{'.'.join(map(str, first['loc']))}: {first['msg']}")


def _picker(record: Mapping[Any, Any], fields: Mapping[str, str]) -> Callable[[str], Any]:
    keys: dict[str, Any] = {}
    for k, v in record.items():
        if isinstance(k, str):
            keys.setdefault(_norm(k), v)

    def pick(target: str) -> Any:
        """The first non-blank value among the target's names (a mapped name replaces the defaults)."""
        names = (fields[target],) if target in fields else _NAMES[target]
        present = [keys[n] for n in map(_norm, names) if keys.get(n) is not None]
        return next((v for v in present if not (isinstance(v, str) and not v.strip())), present[0] if present else None)

    return pick


def _text_names(fields: Mapping[str, str]) -> str:
    names = (fields["text"],) if "text" in fields else FIELD_NAMES["text"]
    return ", ".join(names)


def article_from_record(record: Mapping[Any, Any], where: str, position_id: str,
                        fields: Mapping[str, str] | None = None) -> Article | Skipped:
    """An article from a JSON object or CSV row, by ``FIELD_NAMES`` or the ``fields`` mapping; unknown fields
    are ignored."""
    fields = fields or {}
    pick = _picker(record, fields)
    text = pick("text")
    if text is None:
        return Skipped(where, f"no text field ({_text_names(fields)}; map another with --fields text=NAME)")
    if not isinstance(text, str):
        return Skipped(where, "text: not a string")
    return make_article(
        where, position_id, text=text, title=_as_str(pick("title")), date=parse_date(pick("date")),
        url=_as_str(pick("url")), source=_as_str(pick("source")), author=_as_str(pick("author")),
        doc_id=_as_str(pick("id")), guid=_as_str(pick("guid")),
    )


def _from_json(value: Any, where: str, position_id: str, fields: Mapping[str, str]) -> Article | Skipped:
    if not isinstance(value, dict):
        return Skipped(where, "not a JSON object")
    return article_from_record(value, where, position_id, fields)


# Sources: a file, or a member of an archive ------------------------------------------------------------------


@dataclass
class _Source:
    where: str  # names it in a skipped item: a path, or archive/member
    stem: str  # a one-article file's id; the prefix of position ids
    suffix: str
    size: int
    open: Callable[[], IO[bytes]]

    def read(self, n: int = 8192) -> bytes:
        """Its first ``n`` bytes."""
        with self.open() as f:
            return f.read(n)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text (undecodable)"
    if isinstance(exc, zipfile.BadZipFile | zlib.error | EOFError):
        return f"damaged archive member ({exc})"
    if isinstance(exc, OSError):
        return f"unreadable: {exc.strerror or exc}"
    return (str(exc).splitlines() or [type(exc).__name__])[0]


_BAD_INPUT = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, csv.Error, RuntimeError,
              NotImplementedError)


def _guarded(where: str, items: Iterator[Article | Skipped]) -> Iterator[Article | Skipped]:
    """``items`` until reading fails: the failure becomes one skipped item, and what came before is kept."""
    try:
        yield from items
    except _BAD_INPUT as exc:
        yield Skipped(where, _reason(exc))


def read_path(path: Path, max_bytes: int, fields: Mapping[str, str] | None = None) -> Iterator[Article | Skipped]:
    """Articles from one file, or a reason it (or one of its records) was skipped; never raises for bad input.

    ``fields`` maps article fields to other record field names (``IndexSettings.field_map``)."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        yield Skipped(str(path), f"unsupported file type '{suffix or path.name}'")
        return
    try:
        size = path.stat().st_size
    except OSError as exc:
        yield Skipped(str(path), _reason(exc))
        return
    source = _Source(str(path), path.stem, suffix, size, lambda: path.open("rb"))
    if suffix == ".zip":
        yield from _guarded(source.where, _read_zip(path, max_bytes, fields or {}))
    else:
        yield from _read_source(source, max_bytes, fields or {})


def _read_source(src: _Source, max_bytes: int, fields: Mapping[str, str]) -> Iterator[Article | Skipped]:
    limit = collection_limit(max_bytes)
    if src.suffix in _TEXT:
        items = _read_text(src, max_bytes)
    elif src.suffix == ".jsonl":
        # A collection of articles, streamed line by line: the size limit is per article
        # (IndexSettings.max_document_chars), not per file.
        items = _read_jsonl(src, limit, fields)
    elif src.suffix == ".json":
        items = _read_json(src, limit, fields)
    elif src.suffix == ".csv":
        items = _read_csv(src, limit, fields)
    else:
        items = _read_feed(src, limit)
    yield from _guarded(src.where, items)


def _read_text(src: _Source, max_bytes: int) -> Iterator[Article | Skipped]:
    if src.size > max_bytes:
        yield Skipped(src.where, f"too large ({src.size} bytes > {max_bytes})")
        return
    raw = src.read(max_bytes + 1)
    if len(raw) > max_bytes:  # grew since it was measured
        yield Skipped(src.where, f"too large (over {max_bytes} bytes)")
        return
    try:
        text = _decode(raw)
        doc_id = clean_id(src.stem)
        if src.suffix in (".html", ".htm"):
            yield article_from_html(doc_id, text)
        else:
            yield article_from_text(doc_id, text, markdown=src.suffix in (".md", ".markdown"))
    except (ValueError, ValidationError) as exc:
        yield Skipped(src.where, str(exc).splitlines()[0])


def _unreadable(head: bytes) -> str | None:
    """Why a collection cannot be read at all (binary, empty), judged by its first bytes."""
    if b"\x00" in head and head[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        return "binary file"
    if not head.strip():
        return "empty"
    return None


# JSONL ---------------------------------------------------------------------------------------------------------


@dataclass
class _BadLine:
    reason: str


def _jsonl_lines(f: IO[bytes], limit: int) -> Iterator[str | _BadLine]:
    """Lines of a JSONL stream decoded one at a time; a line over ``limit`` bytes is passed over, never held."""
    first = True
    while raw := f.readline(limit + 1):
        if len(raw) > limit and not raw.endswith(b"\n"):
            while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            yield _BadLine(f"too large (a line over {limit} bytes)")
        else:
            try:
                yield raw.decode("utf-8-sig" if first else "utf-8")
            except UnicodeDecodeError:
                yield _BadLine("not UTF-8 text (undecodable)")
        first = False


def articles_from_jsonl(where: str, stem: str, lines: Iterable[str | _BadLine],
                        fields: Mapping[str, str] | None = None) -> Iterator[Article | Skipped]:
    for lineno, line in enumerate(lines, 1):
        at = f"{where}:{lineno}"
        if isinstance(line, _BadLine):
            yield Skipped(at, line.reason)
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            yield Skipped(at, str(exc))
            continue
        yield _from_json(obj, at, _position_id(stem, lineno), fields or {})


def _read_jsonl(src: _Source, limit: int, fields: Mapping[str, str]) -> Iterator[Article | Skipped]:
    if reason := _unreadable(src.read()):
        yield Skipped(src.where, reason)
        return
    with src.open() as f:
        yield from articles_from_jsonl(src.where, src.stem, _jsonl_lines(f, limit), fields)


# JSON ----------------------------------------------------------------------------------------------------------


class _JsonStream:
    """The elements of a top-level JSON array decoded one at a time, so a large export is never held whole
    (any other document is one value, read up to the limit)."""

    _decoder = json.JSONDecoder()

    def __init__(self, f: IO[str], limit: int) -> None:
        self.f, self.limit = f, limit
        self.buf, self.pos, self.eof = "", 0, False

    def _fill(self, n: int = _JSON_CHUNK) -> None:
        chunk = self.f.read(n)
        if not chunk:
            self.eof = True
        self.buf, self.pos = self.buf[self.pos :] + chunk, 0

    def _peek(self) -> str:
        """The next character that is not white space ("" at the end)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf) or self.eof:
                return self.buf[self.pos : self.pos + 1]
            self._fill()

    def _value(self, n: int) -> Any:
        want = _JSON_CHUNK
        while True:
            try:
                value, end = self._decoder.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof:  # a number cut at the buffer's end would decode short
                    self.pos = end
                    return value
            except json.JSONDecodeError as exc:
                if self.eof:
                    raise ValueError(f"invalid JSON in element {n}: {exc.msg}") from None
            if len(self.buf) - self.pos > self.limit:
                raise ValueError(f"too large (element {n} is over {self.limit} characters)")
            self._fill(want)
            want = max(want, len(self.buf) - self.pos)  # reads double, so a large element is decoded a few times

    def values(self) -> Iterator[tuple[int, Any]]:
        """``(position, value)``: 1, 2, ... for array elements, 0 for a document that is one value."""
        first = self._peek()
        if first != "[":
            value = self._value(1)
            if self._peek():
                raise ValueError("invalid JSON: more after the first value")
            yield 0, value
            return
        self.pos += 1
        n = 0
        while self._peek() != "]":
            if n:
                if self._peek() != ",":
                    raise ValueError(f"invalid JSON after element {n}: expected ',' or ']'")
                self.pos += 1
                self._peek()  # past the white space before the element
            n += 1
            yield n, self._value(n)
        self.pos += 1
        if self._peek():
            raise ValueError("invalid JSON: more after the array")


def _read_json(src: _Source, limit: int, fields: Mapping[str, str]) -> Iterator[Article | Skipped]:
    if reason := _unreadable(src.read()):
        yield Skipped(src.where, reason)
        return
    with src.open() as raw, io.TextIOWrapper(raw, encoding="utf-8-sig") as f:
        for n, value in _JsonStream(f, limit).values():
            if n:
                yield _from_json(value, f"{src.where}#{n}", _position_id(src.stem, n), fields)
            elif isinstance(value, dict) and (wrapped := _wrapped(value, fields)) is not None:
                for i, item in enumerate(wrapped, 1):
                    yield _from_json(item, f"{src.where}#{i}", _position_id(src.stem, i), fields)
            else:  # one article: named like a one-article file
                yield _from_json(value, src.where, clean_id(src.stem), fields)


def _wrapped(obj: dict[str, Any], fields: Mapping[str, str]) -> list[Any] | None:
    """The article list of ``{"articles": [...]}`` and the like (an object with no text of its own)."""
    if _picker(obj, fields)("text") is not None:
        return None
    lists = [v for k, v in obj.items() if isinstance(k, str) and _norm(k) in _WRAPPERS and isinstance(v, list)]
    return lists[0] if len(lists) == 1 else None


# CSV -----------------------------------------------------------------------------------------------------------


def _csv_encoding(head: bytes) -> str:
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    try:
        head.decode("utf-8")
        return "utf-8-sig"
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data" and exc.start >= len(head) - 3:  # a character cut by the head
            return "utf-8-sig"
    # Excel on an Arabic Windows saves "CSV" in Windows-1256.
    if _reads_as_text(head.decode("cp1256", errors="replace")):
        return "cp1256"
    raise ValueError("not UTF-8 text (undecodable)")


def _csv_delimiter(head: str) -> str:
    first = head.splitlines()[0] if head.strip() else ""
    return max(",;\t|", key=first.count) if any(d in first for d in ",;\t|") else ","


def _read_csv(src: _Source, limit: int, fields: Mapping[str, str]) -> Iterator[Article | Skipped]:
    head = src.read(1 << 16)
    if reason := _unreadable(head):
        yield Skipped(src.where, reason)
        return
    encoding = _csv_encoding(head)
    delimiter = _csv_delimiter(head.decode(encoding, errors="ignore"))
    csv.field_size_limit(max(csv.field_size_limit(), min(limit, 2**31 - 1)))  # an article is one large field
    with src.open() as raw, io.TextIOWrapper(raw, encoding=encoding, newline="") as f:
        rows = csv.DictReader(f, delimiter=delimiter)
        header = [h for h in rows.fieldnames or [] if isinstance(h, str)]
        if _picker(dict.fromkeys(header, ""), fields)("text") is None:
            yield Skipped(src.where, f"no text column ({_text_names(fields)}; map another with --fields text=NAME)")
            return
        for n, row in enumerate(rows, 1):
            yield article_from_record(row, f"{src.where}#{n}", _position_id(src.stem, n), fields)


# Feeds and archives --------------------------------------------------------------------------------------------


def _read_feed(src: _Source, limit: int) -> Iterator[Article | Skipped]:
    from index.feeds import parse_feed  # lxml, only for feeds

    if src.size > limit:
        yield Skipped(src.where, f"too large ({src.size} bytes > {limit})")
        return
    data = src.read(limit + 1)
    if len(data) > limit:
        yield Skipped(src.where, f"too large (over {limit} bytes)")
        return
    yield from parse_feed(data, src.where, src.stem)


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(name).parts)


def _read_zip(path: Path, max_bytes: int, fields: Mapping[str, str]) -> Iterator[Article | Skipped]:
    """Each member read in turn from the archive (nothing is extracted); a bad member is skipped alone."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        yield Skipped(str(path), "not a zip archive (or a damaged one)")
        return
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir() and not _hidden(m.filename)]
        if not members:
            yield Skipped(str(path), "empty")
        for info in members:
            where = f"{path}/{info.filename}"
            member = PurePosixPath(info.filename)
            suffix = member.suffix.lower()
            # What a member inflates to is bounded by its declared size (zipfile stops there and checks the CRC).
            limit = max_bytes if suffix in _TEXT else collection_limit(max_bytes)
            if suffix == ".zip":
                yield Skipped(where, "an archive inside an archive is not read")
            elif suffix not in SUPPORTED:
                yield Skipped(where, f"unsupported file type '{suffix or member.name}'")
            elif info.flag_bits & 0x1:
                yield Skipped(where, "encrypted")
            elif info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                # bzip2 and LZMA decompress a whole block at a time, unbounded: only deflate is read.
                yield Skipped(where, f"compression method {info.compress_type} is not supported (use deflate)")
            elif info.file_size > limit:
                yield Skipped(where, f"too large ({info.file_size} bytes uncompressed > {limit})")
            else:
                src = _Source(where, member.stem, suffix, info.file_size, functools.partial(archive.open, info))
                yield from _read_source(src, max_bytes, fields)
