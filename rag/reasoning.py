"""Reasoning ("thinking") text kept out of answers, whole or streamed.

Reasoning models served by llama.cpp, Ollama or vLLM without a reasoning parser put their
thinking into the content itself: ``<think>…</think>`` (Qwen3, DeepSeek-R1) or
``<thinking>…</thinking>``, at the start or in the middle. Some chat templates open the
block in the prompt, so the reply starts inside it and only ``</think>`` shows. Separate
``reasoning_content`` / ``reasoning`` fields are already kept apart by llama-index.

Written by hand because no library does this on a stream: text inside a block that has
not closed yet is held back, and so is a partial tag at the end of a delta.
"""

from __future__ import annotations

import re

_OPEN = re.compile(r"<\s*(think|thinking)\s*>", re.IGNORECASE)
_CLOSE = re.compile(r"<\s*/\s*(think|thinking)\s*>", re.IGNORECASE)
_TAGS = ("<think>", "<thinking>", "</think>", "</thinking>")
_LONGEST_TAG = max(len(t) for t in _TAGS) + 4  # a few spaces inside a tag


def _partial_tag_start(text: str) -> int:
    """Where a suffix of ``text`` that may still grow into a tag begins (``len(text)`` if none)."""
    lo = max(0, len(text) - _LONGEST_TAG)
    for i in range(lo, len(text)):
        if text[i] != "<":
            continue
        tail = re.sub(r"\s+", "", text[i:]).lower()
        if any(tag.startswith(tail) for tag in _TAGS):
            return i
    return len(text)


class ReasoningFilter:
    """``feed(delta)`` returns the visible part of the content streamed so far; ``finish()`` the rest.

    When a closing tag with no opening one shows that everything before it was reasoning,
    :meth:`take_restart` returns true once: whatever was returned until then must be taken back.
    """

    def __init__(self) -> None:
        self._buf = ""
        self._inside = False
        self._restart = False
        self.saw_reasoning = False

    def feed(self, delta: str) -> str:
        self._buf += delta
        out: list[str] = []
        while True:
            if self._inside:
                close = _CLOSE.search(self._buf)
                if close is None:
                    # Drop the thinking, keeping only what may be the start of the closing tag.
                    self._buf = self._buf[_partial_tag_start(self._buf) :]
                    return "".join(out)
                self._buf = self._buf[close.end() :]
                self._inside = False
                continue
            opened, closed = _OPEN.search(self._buf), _CLOSE.search(self._buf)
            if closed is not None and (opened is None or closed.start() < opened.start()):
                # "…</think>" with no "<think>": the reply started inside a block opened by the template.
                self._restart = True
                self.saw_reasoning = True
                out = []
                self._buf = self._buf[closed.end() :]
                continue
            if opened is not None:
                out.append(self._buf[: opened.start()])
                self._buf = self._buf[opened.end() :]
                self._inside = True
                self.saw_reasoning = True
                continue
            cut = _partial_tag_start(self._buf)
            out.append(self._buf[:cut])
            self._buf = self._buf[cut:]
            return "".join(out)

    def take_restart(self) -> bool:
        restart, self._restart = self._restart, False
        return restart

    def finish(self) -> str:
        """The held-back end: shown if it was not a tag after all, dropped if a block never closed."""
        rest, self._buf = self._buf, ""
        return "" if self._inside else rest


def strip_reasoning(text: str) -> str:
    """A whole reply without its reasoning blocks."""
    f = ReasoningFilter()
    return f.feed(text) + f.finish()  # one feed: what precedes an orphan closing tag is already gone
