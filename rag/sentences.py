"""Sentence boundaries for Arabic and English news text, and the page furniture that is never an answer.

Hand-written because llama-index's default splitter does not end sentences
on the Arabic question mark and semicolon (``؟`` ``؛``), and its fallback regex
lacks them too. Pieces keep their trailing whitespace so that joining them
gives back the text exactly (offsets depend on it). A URL, an e-mail address
or a number like 2.5 never ends a sentence.

Furniture (a line that is only a link, a "watch now / read more / follow us /
share" call, a photo credit) stays in the article text, offsets exact, but is
not offered as an answer sentence: :func:`answer_spans`.
"""

from __future__ import annotations

import re

_URL = r"(?:https?://|www\.)\S*[^\s.,،؛;:!?؟)\]}»”\"'(]"
# Inside a sentence: a URL whole, a dot between Latin letters or digits (2.5, sabq.org, a@b.com, U.S.), or any
# character that does not end a sentence. A dot between Arabic words still ends one (news text often drops
# the space after it).
_BODY = rf"(?:{_URL}|[A-Za-z\d]\.(?=[A-Za-z\d])|[^.!?؟؛\n])*"
_PIECE = re.compile(_BODY + r"(?:[.!?؟؛]+[\"'”»)\]]*\s*|\n\s*|$)")
# A URL, an e-mail address, or a bare domain name under a common top-level domain.
_URL_RE = re.compile(_URL + "|" + r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|"
                     r"\b[\w-]+(?:\.[\w-]+)*\.(?:com|net|org|sa|gov|edu|info|tv|me|ly)\b(?:/\S*)?")
_WORD = re.compile(r"[^\W\d_]+")
# Calls to the reader that news sites append to a story (Arabic and English), and photo credits: a short line
# that opens with one of these is furniture. General page vocabulary, not fitted to any question.
_CALLS = re.compile(
    r"^\W*(?:شاهد(?:وا)?\s*(?:الآن|الان|ال?فيديو|بالفيديو|ال?صور|بالصور|:|$)|"
    r"اقرأ|إقرأ|اقرا|للمزيد|لمزيد من|تابع(?:ونا|وا|نا)|شارك(?:وا)?|انقر|اضغط|"
    r"حمّ?ل تطبيق|اشترك|لمشاهدة|للمشاهدة|رابط|المصدر\s*:|تصوير|الصورة\s*:|صورة\s*:|"
    r"watch|read (?:more|also)|follow us|share|click|subscribe|download|photo\b|image\b|credit\b|source\s*:)",
    re.IGNORECASE,
)
_FURNITURE_WORDS = 8  # a call or credit longer than this is a sentence of the story ("شارك في الاجتماع ...")


def split_sentences(text: str) -> list[str]:
    """Split into sentence pieces whose concatenation is ``text``."""
    return [m.group(0) for m in _PIECE.finditer(text) if m.group(0)]


def sentence_spans(text: str, pieces: re.Pattern[str] = _PIECE) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence in ``text``, whitespace trimmed, empty ones dropped. ``pieces``: another
    splitter's pattern (the benchmarks compare with the previous release's)."""
    spans: list[tuple[int, int]] = []
    for m in pieces.finditer(text):
        piece = m.group(0)
        stripped = piece.strip()
        if len(stripped) < 2 or not any(ch.isalnum() for ch in stripped):
            continue
        start = m.start() + (len(piece) - len(piece.lstrip()))
        spans.append((start, start + len(stripped)))
    return spans


def is_furniture(sentence: str) -> bool:
    """A line that is only a link (a few words around it at most), a short call to watch, read, follow or
    share, or a photo credit."""
    rest = _URL_RE.sub(" ", sentence)
    words = len(_WORD.findall(rest))
    if rest != sentence and words <= 4:
        return True
    return words <= _FURNITURE_WORDS and bool(_CALLS.match(sentence.strip(" \t()[]«»\"'-–—|•")))


def answer_spans(text: str) -> list[tuple[int, int]]:
    """The sentences that may answer a question: :func:`sentence_spans` without furniture."""
    return [(s, e) for s, e in sentence_spans(text) if not is_furniture(text[s:e])]
