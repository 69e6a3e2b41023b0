"""Hybrid retrieval: lexical sparse (+ dense when configured) through Qdrant's Query API."""

from __future__ import annotations

import logging
import math
import time
from typing import Literal

from qdrant_client import models

from rag.embedding import CachedEmbedder, EmbedderUnavailable, EmbeddingError
from rag.lexical import LexicalEncoder
from rag.models import Passage, SearchFilters
from rag.settings import RetrievalSettings
from rag.store import PassageStore
from rag.text import detect_language, fold_cached

WAITING_TTL = 5.0  # seconds a count of the chunks waiting for their vector is reused

log = logging.getLogger("sanad")


def date_number(value: object) -> int:
    """``2025-11-25`` -> ``20251125``: a number, so local mode can range-filter it."""
    return int(str(value).replace("-", ""))


def build_filter(filters: SearchFilters | None) -> models.Filter | None:
    if filters is None:
        return None
    must: list[models.Condition] = []
    if filters.doc_ids:
        must.append(models.FieldCondition(key="doc_id", match=models.MatchAny(any=filters.doc_ids)))
    if filters.date_from or filters.date_to:
        must.append(
            models.FieldCondition(
                key="date_num",
                range=models.Range(
                    gte=date_number(filters.date_from) if filters.date_from else None,
                    lte=date_number(filters.date_to) if filters.date_to else None,
                ),
            )
        )
    return models.Filter(must=must) if must else None


class Retriever:
    """Passages for a question. Every chunk is ranked by what it has: hybrid with its dense vector, by its
    lexical score (calibrated to the hybrid scale) while its vector is still being filled in, in one list.
    There is no process-wide lexical mode: fresh articles are found at once, in both languages as soon as
    their vectors are in."""

    def __init__(
        self, store: PassageStore, encoder: LexicalEncoder, embedder: CachedEmbedder | None, settings: RetrievalSettings
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.embedder = embedder
        self.settings = settings
        self._warned = False
        self._waiting_count: tuple[float, int] = (-math.inf, 0)  # (when counted, chunks waiting)

    def query_vector(self, query: str) -> list[float] | None:
        """The question's dense vector, or ``None`` (no embedder, or it failed: retrieval is then lexical)."""
        if self.embedder is None:
            return None
        try:
            return self.embedder.embed_query(query)
        except EmbedderUnavailable as exc:
            if not self._warned:
                self._warned = True
                log.warning("Dense retrieval is off: %s. Answers use lexical retrieval only.", exc)
        except EmbeddingError as exc:
            log.warning("Embedder failed, retrieving lexically: %s", exc)
        return None

    def _pending_estimate(self, query: str) -> tuple[float, float]:
        """(offset, slope) of a waiting chunk's estimated cosine for this question's script and the number of
        chunks waiting (RetrievalSettings)."""
        r = self.settings
        if detect_language(query) == "ar":
            offset, slope, scale = r.pending_offset, r.pending_slope, r.pending_scale
        else:
            offset, slope, scale = r.pending_offset_cross, r.pending_slope_cross, r.pending_scale_cross
        if scale:
            offset -= scale * max(0.0, math.log10(max(self._waiting(), 1) / r.pending_scale_from))
        return offset, slope

    def forget_waiting(self) -> None:
        """Count the waiting chunks afresh on the next search (after changing many at once)."""
        self._waiting_count = (-math.inf, 0)

    def _waiting(self) -> int:
        """Chunks waiting for their dense vector, counted at most every few seconds (a fill moves slowly)."""
        now = time.monotonic()
        at, count = self._waiting_count
        if now - at > WAITING_TTL:
            count = self.store.count_dense_pending()
            self._waiting_count = (now, count)
        return count

    def search(
        self,
        query: str,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        query_vector: list[float] | None | Literal["compute"] = "compute",
    ) -> list[Passage]:
        """The best passages; ``query_vector`` is the question's dense vector when the caller has it."""
        k = top_k or self.settings.top_k
        sparse = self.encoder.query(query)
        dense = self.query_vector(query) if query_vector == "compute" else query_vector
        if not sparse.indices and dense is None:
            return []
        points = self.store.search(
            sparse,
            dense,
            limit=k * 4,  # room for the copies of a syndicated story, dropped below
            candidates=max(self.settings.candidates, k * 4),
            query_filter=build_filter(filters),
            fusion=self.settings.fusion,
            lexical_weight=self.settings.lexical_weight,
            lexical_saturation=self.settings.lexical_saturation,
            pending=self._pending_estimate(query) if dense is not None else (0.0, 0.0),
        )
        passages: list[Passage] = []
        seen: set[str] = set()
        carrier: dict[str, str] = {}  # story -> the one article whose passages stand for it
        # Equal scores: the newer article first, then by chunk id. Qdrant's own order among equal scores (copies
        # of a syndicated story score alike) differed between processes, with Python's string-hash seed.
        points = sorted(points, key=lambda p: (-float(p.score), -((p.payload or {}).get("date_num") or 0), str(p.id)))
        for p in points:
            pl = p.payload or {}
            key = fold_cached(pl.get("text", ""))
            if key in seen:  # the same paragraph republished in several articles
                continue
            story = pl.get("story_id") or pl["doc_id"]
            if carrier.setdefault(story, pl["doc_id"]) != pl["doc_id"]:
                continue  # another copy of a story already represented: its outlets go in also_in
            seen.add(key)
            passages.append(
                Passage(
                    chunk_id=str(p.id),
                    doc_id=pl["doc_id"],
                    title=pl.get("title", ""),
                    text=pl["text"],
                    start=pl["start"],
                    end=pl["end"],
                    sentences=[tuple(s) for s in pl.get("sentences", [])],
                    date=pl.get("date"),
                    source=pl.get("source"),
                    url=pl.get("url"),
                    story_id=story,
                    score=float(p.score),
                )
            )
            if len(passages) == k:
                break
        return passages
