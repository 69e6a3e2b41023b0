"""Checking an LLM's ``[n]`` markers against the passages it was given.

A marker outside 1..len(passages) is dropped; valid ones keep their
number (the passage's), so markers already streamed stay right. Works on a
whole reply or incrementally on a stream.

The check runs to a fixed point: dropping a marker can splice the text around it
into a new one (``[[99]1]`` -> ``[1]``), so the text is checked again until nothing
changes. Checked markers are parked as private-use characters meanwhile, so they
are never read twice and never take part in a splice. After the check, every
``[n]`` in the text is in range and recorded in :attr:`MarkerChecker.order`.
"""

from __future__ import annotations

import re

# \d is any Unicode decimal digit (Arabic-Indic ٣ included); int() reads them all.
MARKER = re.compile(r"\[\s*(\d+(?:\s*[,،]\s*\d+)*)\s*\]")
# Anything that might still become a marker, counting from the first "[" of a run of brackets, digits,
# commas and spaces that reaches the end: "[[99]1" is held back whole, so no "[" is shown that a later
# "1]" could close.
_OPEN_TAIL = re.compile(r"\[[\[\]\d\s,،]*$")
_MARKER_CHAR = re.compile(r"[\[\]\d\s,،]")
# Checked markers while the check runs: one private-use character per passage number.
_PARK = 0xF0000
_PARKED = re.compile("[\U000f0000-\U000ffffd]")


class MarkerChecker:
    def __init__(self, n_passages: int) -> None:
        self.n_passages = n_passages
        self.order: list[int] = []  # passage indexes (1-based) in order of first citation
        self.dropped = 0
        self._pending = ""

    def _park(self, m: re.Match[str]) -> str:
        out = []
        for raw in re.split(r"\s*[,،]\s*", m.group(1)):
            # A marker of many digits (a garbled or hostile reply) is out of range; int() would refuse it.
            k = int(raw) if len(raw) <= 6 else 0
            if not 1 <= k <= self.n_passages:
                self.dropped += 1
                continue
            if k not in self.order:
                self.order.append(k)
            if chr(_PARK + k) not in out:
                out.append(chr(_PARK + k))
        return "".join(out)

    def _resolve(self, text: str) -> str:
        # Leftmost marker first, so citations are recorded in reading order, as on a stream. A splice can only
        # form where a marker was just removed, so the scan resumes at the start of the run of bracket, digit,
        # comma and space characters that reaches that point.
        pos = 0
        while (m := MARKER.search(text, pos)) is not None:
            text = text[: m.start()] + self._park(m) + text[m.end() :]
            pos = m.start()
            while pos > 0 and _MARKER_CHAR.match(text[pos - 1]):
                pos -= 1
        return _PARKED.sub(lambda m: f"[{ord(m.group()) - _PARK}]", text)

    def feed(self, delta: str) -> str:
        """Checked text ready to show; an incomplete marker at the end is held back."""
        # The model's own private-use characters are not ours to unpark: removed before anything else.
        text = self._pending + _PARKED.sub("", delta)
        tail = _OPEN_TAIL.search(text)
        cut = tail.start() if tail else len(text)
        self._pending = text[cut:]
        return self._resolve(text[:cut])

    def finish(self) -> str:
        text, self._pending = self._pending, ""
        return self._resolve(text)

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
