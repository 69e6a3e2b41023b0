"""RSS and Atom feeds: items as articles, from a file, a URL, or polled while serving.

:func:`parse_feed` reads RSS 2.0, RSS 1.0 (RDF) and Atom with lxml, entities left
unresolved and no network (a feed is untrusted input). An item's HTML (``content:encoded``,
``description``, Atom ``content``/``summary``) becomes plain text; the feed's title is
the source. Ids come from the GUID (Atom ``id``), else the link, so an item keeps its id.

:class:`FeedPoller` is what ``sanad serve`` runs every ``SANAD_FEEDS__INTERVAL_SECONDS``
(``service/runtime.py``): each request carries the last response's ``ETag`` and
``Last-Modified`` back, so an unchanged feed costs a 304 and nothing more; a changed one is
parsed and indexed, where items seen before are found unchanged by their content hash.
The validators are kept in memory: after a restart the first poll reads each feed whole.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
from lxml import etree
from lxml import html as lxml_html

from index.readers import IndexSummary, Skipped, clean_id, make_article, parse_date
from rag.models import Article

log = logging.getLogger("sanad.feeds")

USER_AGENT = "Sanad/0.1 (news feed reader)"
_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
_BLOCKS = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "tr", "table",
           "section", "article", "header", "footer", "figure", "figcaption", "hr", "dd", "dt"}


_OTHER_NS = {"http://search.yahoo.com/mrss/", "http://www.itunes.com/dtds/podcast-1.0.dtd"}


class FeedError(ValueError):
    """The document is not a feed (not XML, or another kind of XML)."""


# HTML to text --------------------------------------------------------------------------------------------------


def _tidy(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def html_to_text(fragment: str) -> str:
    """The text of an HTML fragment, a line per paragraph (block elements and ``<br>`` end a line)."""
    if "<" not in fragment and "&" not in fragment:
        return _tidy(fragment)
    try:
        root = lxml_html.fragment_fromstring(fragment, create_parent="div")
    except (etree.ParserError, ValueError):
        return _tidy(fragment)
    for el in root.xpath(".//script|.//style|.//noscript|.//iframe"):
        el.drop_tree()
    parts: list[str] = []
    for event, el in etree.iterwalk(root, events=("start", "end")):
        tag = el.tag if isinstance(el.tag, str) else ""  # comments and processing instructions have no text
        if event == "start":
            if tag in _BLOCKS:
                parts.append("\n")
            if tag and el.text:
                parts.append(el.text)
        else:
            if tag in _BLOCKS:
                parts.append("\n")
            if el.tail and el is not root:
                parts.append(el.tail)
    return _tidy("".join(parts))


# Parsing -------------------------------------------------------------------------------------------------------


def _parse_xml(data: bytes) -> Any:
    """The document's root; a feed with a stray ``&nbsp;`` or an unclosed tag is read as well as it can be."""
    error: Exception | None = None
    for recover in (False, True):
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                                 recover=recover)
        try:
            root = etree.fromstring(data, parser)
        except etree.XMLSyntaxError as exc:
            error = error or exc
            continue
        if root is not None:
            return root
    raise FeedError(f"not XML ({error})" if error else "not XML")


def _local(el: Any) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _first(el: Any, *names: str) -> Any:
    """The first child named one of ``names`` (in that order) that has text, whatever its namespace but
    Media RSS's and iTunes' (``media:content`` is an image, not the item's content)."""
    if el is None:
        return None
    for name in names:
        for child in el:
            if _local(child) == name and etree.QName(child).namespace not in _OTHER_NS and _text(child):
                return child
    return None


def _text(el: Any) -> str:
    return "".join(el.itertext()).strip() if el is not None else ""


def _link(item: Any) -> str | None:
    """RSS ``<link>url</link>``, or Atom's ``<link href>`` (the ``alternate`` one when there are several)."""
    links = [c for c in item if _local(c) == "link"]
    for c in links:
        if c.get("href") and c.get("rel", "alternate") == "alternate":
            return str(c.get("href"))
    for c in links:
        if c.get("href") or _text(c):
            return str(c.get("href") or _text(c))
    return None


def _body(item: Any) -> str:
    """The item's text: its full content when given, else its summary, HTML made plain."""
    el = _first(item, "encoded", "content", "description", "summary")
    if el is None:
        return ""
    if el.get("type") == "xhtml":  # Atom: the HTML is inline XML
        return html_to_text((el.text or "") + "".join(etree.tostring(c, encoding="unicode") for c in el))
    if el.get("type") == "text":
        return _tidy(_text(el))
    return html_to_text(_text(el))


def _author(item: Any) -> str | None:
    el = _first(item, "creator", "author")
    if el is None:
        return None
    name = _first(el, "name")  # Atom: <author><name>
    return _text(name if name is not None else el) or None


def _item_article(item: Any, where: str, position_id: str, source: str | None) -> Article | Skipped:
    guid = _text(_first(item, "guid", "id")) or item.get("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about")
    title = _text(_first(item, "title"))
    return make_article(
        where, position_id, text=_body(item), title=html_to_text(title) if "<" in title else title,
        date=parse_date(_text(_first(item, "pubDate", "published", "date", "updated", "issued", "modified"))),
        url=_link(item) or None, source=source, author=_author(item), guid=guid or None,
    )


def read_feed(data: bytes, where: str, stem: str = "feed") -> list[Article | Skipped]:
    """The items of an RSS 2.0, RSS 1.0 or Atom document; :class:`FeedError` when it is no feed."""
    root = _parse_xml(data)
    kind = _local(root)
    if kind == "rss":
        channel = _first(root, "channel")
        items = [c for c in channel if _local(c) == "item"] if channel is not None else []
    elif kind == "RDF":
        channel = _first(root, "channel")
        items = [c for c in root if _local(c) == "item"]
    elif kind == "feed":
        channel = root
        items = [c for c in root if _local(c) == "entry"]
    else:
        raise FeedError(f"not an RSS or Atom feed (the document is <{kind or '?'}>)")
    source = " ".join(_text(_first(channel, "title")).split()) or None
    return [_item_article(item, f"{where}#{n}", f"{clean_id(stem)[:180]}-{n:06d}", source)
            for n, item in enumerate(items, 1)]


def parse_feed(data: bytes, where: str, stem: str = "feed") -> Iterator[Article | Skipped]:
    """:func:`read_feed` for ``index.readers``: a document that is no feed is one skipped item."""
    try:
        yield from read_feed(data, where, stem)
    except FeedError as exc:
        yield Skipped(where, str(exc))


def url_stem(url: str) -> str:
    """What position ids of a fetched feed start with: its host and file name (``example.org-feed``)."""
    parts = urlsplit(url)
    name = parts.path.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return clean_id("-".join(p for p in ((parts.hostname or "").removeprefix("www."), name) if p) or "feed")


# Fetching ------------------------------------------------------------------------------------------------------


def _http_reason(exc: Exception, timeout: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})" if str(exc) else "cannot connect"
    return str(exc) or type(exc).__name__


def _capped(chunks: Iterator[bytes], max_bytes: int) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise ValueError(f"too large (over {max_bytes} bytes)")
    return bytes(body)


def _client_options(timeout: float) -> dict[str, Any]:
    return {"timeout": timeout, "follow_redirects": True, "headers": {"User-Agent": USER_AGENT, "Accept": _ACCEPT}}


def read_url(url: str, max_bytes: int, timeout: float = 20.0) -> list[Article | Skipped]:
    """The items of the feed at ``url`` (``sanad index URL``), or one skipped item saying why not."""
    try:
        with httpx.Client(**_client_options(timeout)) as client, client.stream("GET", url) as r:
            if r.status_code >= 400:
                return [Skipped(url, f"HTTP {r.status_code}")]
            data = _capped(r.iter_bytes(), max_bytes)
    except (httpx.HTTPError, ValueError) as exc:
        return [Skipped(url, _http_reason(exc, timeout))]
    try:
        return read_feed(data, url, url_stem(url))
    except FeedError as exc:
        return [Skipped(url, str(exc))]


# Polling -------------------------------------------------------------------------------------------------------


@dataclass
class FeedPoll:
    """One feed polled once: the HTTP status and what indexing did, or why it failed."""

    url: str
    status: int | None = None  # None when no response came
    summary: IndexSummary | None = None  # None when nothing was indexed (not modified, or failed)
    error: str | None = None
    seconds: float = 0.0

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def describe(self) -> str:
        """The poll's one log line."""
        if self.error:
            return f"feed {self.url}: failed ({self.error}); trying again next interval"
        if self.summary is None:
            return f"feed {self.url}: not modified ({self.seconds:.2f} s)"
        s = self.summary
        return (f"feed {self.url}: {s.documents + len(s.skipped)} items, {s.added} added, {s.updated} updated, "
                f"{s.unchanged} unchanged, {len(s.skipped)} skipped ({self.seconds:.2f} s)")


Index = Callable[[list[Article | Skipped]], IndexSummary]


class FeedPoller:
    """Polls feeds with conditional GET and hands what they carry to ``index`` (run in a worker thread,
    with parsing: the caller's function takes the write lock it needs)."""

    def __init__(self, urls: Sequence[str], index: Index, *, timeout: float = 20.0,
                 max_bytes: int = 250_000_000) -> None:
        self.urls = list(urls)
        self.index = index
        self.timeout = timeout
        self.max_bytes = max_bytes
        # url -> request headers from the last good response's ETag / Last-Modified
        self._validators: dict[str, dict[str, str]] = {}

    async def poll_once(self) -> list[FeedPoll]:
        """Every feed polled once, in order; a failing feed is reported in its result, never raised."""
        async with httpx.AsyncClient(**_client_options(self.timeout)) as client:
            return [await self._poll(client, url) for url in self.urls]

    async def _poll(self, client: httpx.AsyncClient, url: str) -> FeedPoll:
        t0 = time.perf_counter()
        result = FeedPoll(url)
        try:
            async with client.stream("GET", url, headers=self._validators.get(url, {})) as r:
                result.status = r.status_code
                if r.status_code == 304:
                    result.seconds = time.perf_counter() - t0
                    return result
                if r.status_code >= 300:
                    result.error = f"HTTP {r.status_code}"
                    return result
                body = bytearray()
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise ValueError(f"too large (over {self.max_bytes} bytes)")
                data = bytes(body)
                validators = {k: r.headers[h] for k, h in (("If-None-Match", "etag"),
                                                           ("If-Modified-Since", "last-modified")) if h in r.headers}
        except (httpx.HTTPError, ValueError) as exc:
            result.error = _http_reason(exc, self.timeout)
            return result
        try:
            result.summary = await anyio.to_thread.run_sync(self._read_and_index, data, url)
        except FeedError as exc:
            result.error = str(exc)
        except Exception as exc:  # the store failed (a Qdrant server down): said, and the next poll tries again
            log.debug("indexing %s failed", url, exc_info=True)
            result.error = f"indexing failed: {exc}"
        else:
            self._validators[url] = validators  # only once indexed: a failure is fetched whole next time
        result.seconds = time.perf_counter() - t0
        return result

    def _read_and_index(self, data: bytes, url: str) -> IndexSummary:
        return self.index(read_feed(data, url, url_stem(url)))
