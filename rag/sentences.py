"""Sentence boundaries for Arabic and English news text.

Hand-written because llama-index's default splitter does not end sentences
on the Arabic question mark and semicolon (``؟`` ``؛``), and its fallback regex
lacks them too. Pieces keep their trailing whitespace so that joining them
gives back the text exactly (offsets depend on it).
"""

from __future__ import annotations

import re

_PIECE = re.compile(r"[^.!?؟؛\n]*(?:[.!?؟؛]+[\"'”»)\]]*\s*|\n\s*|$)")


def split_sentences(text: str) -> list[str]:
    """Split into sentence pieces whose concatenation is ``text``."""
    return [m.group(0) for m in _PIECE.finditer(text) if m.group(0)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence in ``text``, whitespace trimmed, empty ones dropped."""
    spans: list[tuple[int, int]] = []
    for m in _PIECE.finditer(text):
        piece = m.group(0)
        stripped = piece.strip()
        if len(stripped) < 2 or not any(ch.isalnum() for ch in stripped):
            continue
        start = m.start() + (len(piece) - len(piece.lstrip()))
        spans.append((start, start + len(stripped)))
    return spans
