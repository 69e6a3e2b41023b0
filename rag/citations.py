"""Checking an LLM's ``[n]`` markers against the passages it was given.

A marker outside 1..len(passages) is dropped; valid ones keep their
number (the passage's), so markers already streamed stay right. Works on a
whole reply or incrementally on a stream.
"""

from __future__ import annotations

import re

MARKER = re.compile(r"\[\s*(\d+(?:\s*[,،]\s*\d+)*)\s*\]")
# Anything that might still become a marker: an unclosed "[" with digits/commas/spaces.
_OPEN_TAIL = re.compile(r"\[[\d\s,،]*$")


class MarkerChecker:
    def __init__(self, n_passages: int) -> None:
        self.n_passages = n_passages
        self.order: list[int] = []  # passage indexes (1-based) in order of first citation
        self.dropped = 0
        self._pending = ""

    def _renumber(self, m: re.Match[str]) -> str:
        out = []
        for raw in re.split(r"\s*[,،]\s*", m.group(1)):
            # A marker of many digits (a garbled or hostile reply) is out of range; int() would refuse it.
            k = int(raw) if len(raw) <= 6 else 0
            if not 1 <= k <= self.n_passages:
                self.dropped += 1
                continue
            if k not in self.order:
                self.order.append(k)
            if f"[{k}]" not in out:
                out.append(f"[{k}]")
        return "".join(out)

    def feed(self, delta: str) -> str:
        """Checked text ready to show; an incomplete marker at the end is held back."""
        text = self._pending + delta
        tail = _OPEN_TAIL.search(text)
        cut = tail.start() if tail else len(text)
        self._pending = text[cut:]
        return MARKER.sub(self._renumber, text[:cut])

    def finish(self) -> str:
        text, self._pending = self._pending, ""
        return MARKER.sub(self._renumber, text)

    def check(self, text: str) -> str:
        return self.feed(text) + self.finish()


def unmark(text: str) -> str:
    """Article text with its own bracketed numbers made inert ("[7]" -> "(7)"), for quoting inside an
    answer, where ``[n]`` means "passage n"."""
    return MARKER.sub(lambda m: f"({m.group(1)})", text)


_SPACE_BEFORE_PUNCT = re.compile(r"[ \t]+([.,،؛:!?؟])")
_SPACES = re.compile(r"[ \t]{2,}")
_TRAILING_SPACE = re.compile(r"\s*\Z")


def tidy(text: str) -> str:
    """Whitespace left behind by dropped markers."""
    return _SPACES.sub(" ", _SPACE_BEFORE_PUNCT.sub(r"\1", text)).strip()


class StreamTidy:
    """:func:`tidy` on a stream: ``feed(a) + feed(b) + finish() == tidy(a + b)``, so the text a client is
    shown while the answer streams is the answer's final text. Trailing whitespace is held back until
    the next character shows whether it stays."""

    def __init__(self) -> None:
        self._held = ""
        self._started = False

    def feed(self, text: str) -> str:
        buf = self._held + text
        if not self._started:
            buf = buf.lstrip()
            if not buf:
                self._held = ""
                return ""
            self._started = True
        match = _TRAILING_SPACE.search(buf)
        cut = match.start() if match else len(buf)
        body, self._held = buf[:cut], buf[cut:]
        return _SPACES.sub(" ", _SPACE_BEFORE_PUNCT.sub(r"\1", body))

    def finish(self) -> str:
        self._held = ""
        return ""
