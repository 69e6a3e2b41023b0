"""The sources block: what each ``[n]`` points at, as plain text any chat client shows.

Generic OpenAI clients (the ``openai`` SDK, ``llm``, LangChain) drop unknown JSON fields, so
on ``/v1/chat/completions`` the answer's content ends with this block:

    Sources:
    [1] اجتماع طارئ -القاهرة — اليوم السابع, 2025-11-25: «استضافت القاهرة اليوم الثلاثاء اجتماعًا…»

It is written in the answer's language, and it is taken off assistant messages a client
sends back as history, so a follow-up is understood from the answer alone.
"""

from __future__ import annotations

import re

from rag.models import Answer, Citation

HEADERS = {"ar": "المصادر:", "en": "Sources:"}
ALSO_IN = {"ar": "ونشرته أيضًا", "en": "also in"}
ALSO_IN_SHOWN = 4  # outlets named; the rest are counted
QUOTE_CHARS = 140
TITLE_CHARS = 80
_MARKER = re.compile(r"\[(\d+)\]")
_BLOCK = re.compile(r"\n\n(?:" + "|".join(map(re.escape, HEADERS.values())) + r")\n\[\d+\] .*\Z", re.DOTALL)


def shorten(text: str, width: int = 60) -> str:
    """``text`` on one line, cut at a word boundary with an ellipsis when longer than ``width``."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    head = text[: width - 1]
    cut = head.rsplit(" ", 1)[0] if " " in head else head
    return cut.rstrip(" ،,.:;؛-–") + "…"


def _unmarked(text: str) -> str:
    """An article's own "[7]" shown with full-width brackets: in the block, [n] is only ever a citation."""
    return _MARKER.sub(r"［\1］", text)


def also_in_text(c: Citation, language: str) -> str:
    """``also in: okaz (2015-07-22), alriyadh`` for a syndicated passage, else ``""``."""
    if not c.also_in:
        return ""
    names = [a.source or shorten(a.title or a.doc_id, 40) for a in c.also_in]
    shown = list(dict.fromkeys(names))[:ALSO_IN_SHOWN]
    rest = len(c.also_in) - sum(names.count(n) for n in shown)
    more = (f" +{rest}" if rest > 0 else "")
    return f"{ALSO_IN[language]}: {', '.join(shown)}{more}"


def source_line(c: Citation, language: str = "en") -> str:
    where = ", ".join(x for x in (c.source, c.date) if x)
    title = _unmarked(shorten(c.title or c.doc_id, TITLE_CHARS))
    line = f"[{c.n}] {title}" + (f" — {_unmarked(where)}" if where else "")
    line += f": «{_unmarked(shorten(c.quote, QUOTE_CHARS))}»"
    if c.url and c.url.startswith(("http://", "https://")):
        line += f" {c.url}"
    if also := also_in_text(c, language):
        line += f" ({_unmarked(also)})"
    return line


def sources_block(answer: Answer) -> str:
    """``"\\n\\nSources:\\n[1] …"`` for an answer with citations, else ``""``."""
    if not answer.citations:
        return ""
    lines = [source_line(c, answer.language) for c in answer.citations]
    return "\n\n" + HEADERS[answer.language] + "\n" + "\n".join(lines)


def strip_sources(content: str) -> str:
    """An assistant message without the sources block Sanad appended to it."""
    return _BLOCK.sub("", content)
