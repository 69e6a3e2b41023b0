"""Syndicated stories: the same wire text carried by several outlets (or twice by one) is one story.

At index time each article gets a MinHash signature of its word 3-shingles (datasketch) and
is looked up in an LSH index of the articles already stored. An article whose estimated
Jaccard similarity with a stored one reaches ``threshold`` joins that article's story
(``story_id``); otherwise it starts its own, named by its id. Exact copies score 1; lightly
edited ones (a changed headline, a dropped photo caption, an added dateline) stay above the
threshold. Signatures are kept on the document records, so the index is rebuilt from the store
by any process that indexes (the CLI, the server, a second machine on a Qdrant server), and every
``REFRESH_SECONDS`` it reads what other processes indexed meanwhile (several service processes on one
Qdrant server each take uploads). ``also_in`` is read from the store at answer time, so every process
gives the same one.

Written here rather than taken whole from a library: the shingling must fold Arabic spelling
variants (``rag.text.fold``), and the LSH index has to be rebuilt from Qdrant records.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.text import fold

if TYPE_CHECKING:
    from datasketch import MinHash, MinHashLSH

    from rag.store import PassageStore

log = logging.getLogger("sanad")

NUM_PERM = 64
SHINGLE = 3
THRESHOLD = 0.7  # estimated Jaccard of word 3-shingles; the sample checked by eye is in docs/usage.md
SCHEME = "affine32"  # datasketch 2's default, stated: stored signatures must be read back the same way
MIN_SHINGLES = 8  # shorter texts (a one-line brief) are too little evidence of a shared story
REFRESH_SECONDS = 10.0
REFRESH_MARGIN = 60.0  # read back this much before the last refresh: clocks of processes on other machines differ


def shingles(text: str) -> set[bytes]:
    words = fold(text).split()
    return {" ".join(words[i : i + SHINGLE]).encode() for i in range(max(len(words) - SHINGLE + 1, 0))}


def signature(text: str) -> MinHash | None:
    from datasketch import MinHash

    grams = shingles(text)
    if len(grams) < MIN_SHINGLES:
        return None
    m = MinHash(num_perm=NUM_PERM, seed=1, scheme=SCHEME)
    m.update_batch(list(grams))
    return m


FIELDS = ["doc_id", "story_id", "minhash"]


def _from_values(values: list[int]) -> MinHash:
    from datasketch import MinHash

    return MinHash(num_perm=NUM_PERM, seed=1, hashvalues=np.asarray(values, dtype=np.uint32), scheme=SCHEME)


class StoryIndex:
    """The LSH index over stored articles; ``assign`` gives an article its story."""

    def __init__(self, store: PassageStore, threshold: float = THRESHOLD) -> None:
        self.store = store
        self.threshold = threshold
        self._lsh: MinHashLSH | None = None
        self._signatures: dict[str, MinHash] = {}
        self._story: dict[str, str] = {}
        self._lock = threading.Lock()
        self._loaded_at = 0.0

    def _load(self) -> MinHashLSH:
        now = time.time()
        if self._lsh is None:
            from datasketch import MinHashLSH

            # The LSH finds candidates (its bands need a threshold below 1); each is checked against ours.
            self._lsh = MinHashLSH(threshold=min(self.threshold, 0.95), num_perm=NUM_PERM)
            self._read(self.store.iter_documents(fields=FIELDS))
        elif now - self._loaded_at >= REFRESH_SECONDS:
            self._read(self.store.iter_documents(fields=FIELDS, indexed_since=self._loaded_at - REFRESH_MARGIN))
        else:
            return self._lsh
        self._loaded_at = now
        return self._lsh

    def _read(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            values = record.get("minhash")
            if not values or len(values) != NUM_PERM:
                continue
            story = record.get("story_id") or record["doc_id"]
            if self._story.get(record["doc_id"]) != story:
                self._insert(record["doc_id"], _from_values(values), story)

    def _insert(self, doc_id: str, m: MinHash, story: str) -> None:
        assert self._lsh is not None
        if doc_id in self._signatures:
            self._lsh.remove(doc_id)
        self._lsh.insert(doc_id, m)
        self._signatures[doc_id] = m
        self._story[doc_id] = story

    def assign(self, doc_id: str, text: str) -> tuple[str, list[int] | None]:
        """The story ``doc_id`` belongs to, and its signature to store on its record."""
        m = signature(text)
        with self._lock:
            lsh = self._load()
            self.remove(doc_id, locked=True)  # a changed article is matched afresh
            if m is None:
                return doc_id, None
            best, best_sim = None, self.threshold
            for other in lsh.query(m):
                sim = m.jaccard(self._signatures[other])
                if sim >= best_sim and (best is None or sim > best_sim or other < best):
                    best, best_sim = other, sim
            story = self._story[best] if best is not None else doc_id
            self._insert(doc_id, m, story)
        return story, [int(v) for v in m.hashvalues]

    def remove(self, doc_id: str, locked: bool = False) -> None:
        if not locked:
            with self._lock:
                self.remove(doc_id, locked=True)
            return
        if self._lsh is not None and doc_id in self._signatures:
            self._lsh.remove(doc_id)
            del self._signatures[doc_id]
            self._story.pop(doc_id, None)

    def similar(self, a: str, b: str) -> float:
        """Estimated Jaccard similarity of two indexed articles (for measuring)."""
        with self._lock:
            self._load()
            return float(self._signatures[a].jaccard(self._signatures[b]))

    def members(self) -> dict[str, list[str]]:
        """Story id -> its articles, for stories with more than one (for measuring)."""
        with self._lock:
            self._load()
            groups: dict[str, list[str]] = {}
            for doc, story in self._story.items():
                groups.setdefault(story, []).append(doc)
        return {s: sorted(d) for s, d in groups.items() if len(d) > 1}

