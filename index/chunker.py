"""Arabic-aware chunking on llama-index's SentenceSplitter.

Two overrides, both for Arabic: sentences end on ``؟`` and ``؛`` too (our
``split_sentences``), and size is counted in o200k tokens (about one per
Arabic word) rather than the default cl100k (about three), so an Arabic
chunk holds as many words as an English one. Offsets into the original text
are recovered for every chunk and every sentence in it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources

from llama_index.core.node_parser import SentenceSplitter

from rag.sentences import answer_spans, split_sentences

# What the chunks of an article are made by. Raise it with every change to how text is chunked or split into
# sentences: a store's articles indexed by an earlier version are chunked again on the next `sanad index`
# (the vector cache keeps what did not change from being encoded again).
CHUNKER_VERSION = 3  # 2: a lead-in line (ending in ":") opens the chunk of the table or list it announces;
# 3: URLs, e-mail addresses and decimals never end a sentence; furniture lines are not answer sentences


@dataclass
class Chunk:
    index: int
    text: str
    start: int
    end: int
    sentences: list[tuple[int, int]]  # relative to ``text``


@lru_cache(maxsize=1)
def _o200k():  # type: ignore[no-untyped-def]
    # tiktoken ships no files; llama-index-core does, use them offline.
    cache = resources.files("llama_index.core") / "_static" / "tiktoken_cache"
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache))
    import tiktoken

    return tiktoken.get_encoding("o200k_base")


class Chunker:
    def __init__(self, chunk_tokens: int = 160, overlap: int = 0) -> None:
        enc = _o200k()
        # Recorded with each article: other chunking (an upgrade, or other chunk settings) re-chunks it.
        self.signature = f"v{CHUNKER_VERSION}/{chunk_tokens}/{overlap}"
        self._overlap = overlap
        self._splitter = SentenceSplitter(
            chunk_size=chunk_tokens,
            chunk_overlap=overlap,
            tokenizer=enc.encode,
            chunking_tokenizer_fn=split_sentences,
            paragraph_separator="\n\n",
        )

    def chunk(self, text: str, body_start: int = 0) -> list[Chunk]:
        """Chunks of ``text[body_start:]``, with offsets into the whole of ``text``."""
        chunks: list[Chunk] = []
        cursor = 0
        text = text[body_start:]
        for piece in self._splitter.split_text(text):
            piece = piece.strip()
            if not piece:
                continue
            start = text.find(piece, cursor)
            if start < 0:  # the splitter normalized something: fall back to a search from the top
                start = text.find(piece)
            if start < 0:
                raise AssertionError("chunk text not found in the original")  # pragma: no cover
            end = start + len(piece)
            chunks.append(Chunk(len(chunks), piece, body_start + start, body_start + end, answer_spans(piece)))
            # Without overlap the next chunk starts after this one: searching from inside it would
            # place a chunk whose text repeats earlier content (a repeated paragraph) at the wrong offset.
            cursor = start + 1 if self._overlap else end  # within the body
        return _lead_ins_forward(text, chunks, body_start)


_LEAD_IN_ENDS = (":", "：")


def _lead_ins_forward(body: str, chunks: list[Chunk], body_start: int) -> list[Chunk]:
    """A line that announces a list or table ("… as follows:") and ends a chunk is moved to the start of the
    next chunk, beside what it announces: split from it, it would be retrieved and quoted without the rows it
    introduces, and the rows without what they are. (Not in SentenceSplitter, which only counts tokens.)"""
    out: list[Chunk] = []
    carried: int | None = None  # start (in the whole text) of a lead-in moved into this chunk
    for i, c in enumerate(chunks):
        start = c.start if carried is None else carried
        end = c.end
        carried = None
        # The line, or its last sentence when it is a paragraph of several.
        line_start = body.rfind("\n", 0, c.end - body_start) + 1 + body_start
        if c.sentences:
            line_start = max(line_start, c.start + c.sentences[-1][0])
        if (i + 1 < len(chunks) and body[c.end - body_start - 1 :].startswith(_LEAD_IN_ENDS)
                and line_start >= start and chunks[i + 1].start >= c.end):
            carried, end = line_start, line_start
            while end > start and body[end - body_start - 1].isspace():
                end -= 1
        if end <= start:
            continue  # the chunk was only the lead-in: it opens the next one
        if (start, end) == (c.start, c.end):
            out.append(replace(c, index=len(out)))  # unchanged: its sentences are already found
            continue
        piece = body[start - body_start : end - body_start]
        out.append(Chunk(len(out), piece, start, end, answer_spans(piece)))
    return out
