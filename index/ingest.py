"""Idempotent indexing: unchanged articles are skipped, changed ones replace
their chunks (no stale ones left), new ones are added.

Order of writes makes a crash at any point safe to re-run: chunks are
upserted under content-derived ids, then the document's other chunks are
deleted, and only then is the document record (with its content hash)
written. A re-run sees no matching record and redoes the same idempotent work.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qdrant_client import models

from index.chunker import Chunk, Chunker
from index.readers import IndexSummary, Outcome, Skipped, collection_limit, iter_files, read_path  # noqa: F401 (re-exported)
from index.stories import StoryIndex
from rag.embedding import CachedEmbedder, EmbedderUnavailable
from rag.lexical import LexicalEncoder
from rag.models import Article
from rag.retrieval import date_number
from rag.settings import IndexSettings
from rag.store import DENSE, LEXICAL, PassageStore, chunk_point_id

log = logging.getLogger("sanad")

def content_hash(article: Article) -> str:
    fields = [article.title, article.text, str(article.date or ""), article.source or "", article.url or ""]
    if article.author:
        fields.append(f"author:{article.author}")
    if article.body_start:  # what is chunked changed (front matter left out): an older index is replaced
        fields.append(f"body:{article.body_start}")
    body = "\x00".join(fields)
    return hashlib.sha256(body.encode()).hexdigest()


class Indexer:
    def __init__(
        self, store: PassageStore, encoder: LexicalEncoder, embedder: CachedEmbedder | None, settings: IndexSettings,
        defer_dense: bool = False,
        feed_timeout: float = 20.0,
    ) -> None:
        """``defer_dense``: index lexically now and leave the dense vectors to :meth:`fill_dense` (bulk runs:
        the articles are searchable long before the encoder is through them)."""
        self.defer_dense = defer_dense
        self.feed_timeout = feed_timeout  # seconds per feed URL (FeedSettings.timeout)
        self.store = store
        self.encoder = encoder
        self.embedder = embedder
        self._unavailable = False
        self.settings = settings
        self.chunker = Chunker(settings.chunk_tokens, settings.chunk_overlap)
        self.stories = StoryIndex(store, settings.story_threshold)

    def _dense(self, chunks: list[Chunk]) -> list[list[float]] | None:
        """A dense vector per chunk, and (cached, for the answerer) one per sentence; ``None`` without an
        embedder or when it cannot run on this machine (said once; retrieval is then lexical)."""
        if self.embedder is None or self._unavailable:
            return None
        try:
            vectors = self.embedder.vectors([c.text for c in chunks])
            if self.settings.sentence_vectors:
                self.embedder.vectors([c.text[s:e] for c in chunks for s, e in c.sentences])
        except EmbedderUnavailable as exc:
            self._unavailable = True
            log.warning("No dense vectors: %s. Indexing and retrieval are lexical only.", exc)
            return None
        return vectors.tolist()  # type: ignore[no-any-return]

    def index_article(self, article: Article, defer_dense: bool | None = None) -> tuple[Outcome, int]:
        """Index one article; returns what happened and its chunk count. ``defer_dense`` overrides the
        indexer's own choice for this article."""
        if len(article.text) > self.settings.max_document_chars:
            raise ValueError(f"document too long ({len(article.text)} characters > {self.settings.max_document_chars})")
        digest = content_hash(article)
        record = self.store.get_document(article.id)
        if self._same(record, digest):
            assert record is not None
            return "unchanged", int(record.get("chunks", 0))
        chunks = self.chunker.chunk(article.text, article.body_start)
        story, minhash = self.stories.assign(article.id, article.text[article.body_start :])
        if not chunks:
            raise ValueError("no text to index")
        defer = self.defer_dense if defer_dense is None else defer_dense
        dense = None if defer else self._dense(chunks)
        points = []
        for i, c in enumerate(chunks):
            vector: dict[str, models.Vector] = {LEXICAL: self.encoder.document(c.text)}
            if dense is not None:
                vector[DENSE] = dense[i]
            payload = {
                "doc_id": article.id,
                "title": article.title,
                "chunk_index": c.index,
                "text": c.text,
                "start": c.start,
                "end": c.end,
                "sentences": [list(s) for s in c.sentences],
                "date": article.date.isoformat() if article.date else None,
                "date_num": date_number(article.date) if article.date else None,
                "source": article.source,
                "url": article.url,
                "story_id": story,
            }
            if self.embedder is not None:
                payload["dense"] = int(dense is not None)  # 0: fill_dense adds the vector later
            points.append(
                models.PointStruct(id=chunk_point_id(article.id, c.index, c.text), vector=vector, payload=payload)
            )
        self.store.upsert_chunks(points)
        self.store.delete_chunks(article.id, keep=[str(p.id) for p in points])
        self.store.put_document(
            {
                "doc_id": article.id,
                "title": article.title,
                "content_hash": digest,
                "chunking": self.chunker.signature,
                "chunks": len(points),
                "date": article.date.isoformat() if article.date else None,
                "source": article.source,
                "url": article.url,
                "author": article.author,
                "story_id": story,
                "minhash": minhash,
                "chars": len(article.text),
                "indexed_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "indexed_ts": time.time(),  # for StoryIndex.refresh: what other processes indexed meanwhile
            }
        )
        return ("updated" if record else "added"), len(points)

    def is_current(self, article: Article) -> bool:
        """Whether ``article`` is indexed as it is (indexing it again would change nothing)."""
        return self._same(self.store.get_document(article.id), content_hash(article))

    def _same(self, record: dict[str, Any] | None, digest: str) -> bool:
        """Whether the stored ``record`` is of this content, chunked as this release chunks."""
        return bool(record and record.get("content_hash") == digest
                    and record.get("chunking") == self.chunker.signature)

    def defer_arrivals(self, items: Iterable[Article | Skipped]) -> bool:
        """Whether an upload's or a feed poll's articles are too many to embed before it returns: more new or
        changed ones than ``inline_dense_articles``. Unchanged articles cost nothing and are not counted."""
        if self.embedder is None:
            return False
        limit = self.settings.inline_dense_articles
        fresh = 0
        for item in items:
            if not isinstance(item, Skipped) and not self.is_current(item):
                fresh += 1
                if fresh > limit:
                    return True
        return False

    def fill_dense(
        self,
        batch: int = 8,
        on_batch: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
        write_lock: threading.Lock | None = None,
    ) -> int:
        """Compute the dense vectors of chunks indexed without them, ``batch`` chunks at a time; returns
        how many were filled. Resumable: what is pending is read from the store, so a killed run, or the
        next ``sanad index``, continues where it stopped. A chunk replaced meanwhile (its article changed)
        is not written back. Stops early when ``stop`` is set or the encoder cannot run."""
        if self.embedder is None:
            return 0
        done = 0
        while stop is None or not stop.is_set():
            pending = self.store.dense_pending(batch)
            if not pending:
                break
            texts = [pl["text"] for _, pl in pending]
            try:
                vectors = self.embedder.vectors(texts)
                # Sentence vectors too, for the answerer (cached by content; nothing is stored in Qdrant).
                if self.settings.sentence_vectors:
                    self.embedder.vectors([pl["text"][a:b] for _, pl in pending for a, b in pl.get("sentences", [])])
            except EmbedderUnavailable as exc:
                log.warning("Dense vectors cannot be computed here: %s. Retrieval stays lexical.", exc)
                break
            # Whole points again (qdrant-edge has no vector-only update); the lexical vector is recomputed
            # from the stored text, which gives the same vector the manifest's analyzer made.
            points = [
                models.PointStruct(id=pid, payload={**pl, "dense": 1},
                                   vector={LEXICAL: self.encoder.document(pl["text"]), DENSE: vec.tolist()})
                for (pid, pl), vec in zip(pending, vectors, strict=True)
            ]
            with write_lock or contextlib.nullcontext():
                alive = self.store.existing_chunk_ids([str(p.id) for p in points])
                self.store.upsert_chunks([p for p in points if str(p.id) in alive])
            done += len(points)
            if on_batch is not None:
                on_batch(len(points))
        return done

    def index_articles(
        self,
        articles: Iterable[Article | Skipped],
        summary: IndexSummary | None = None,
        on_item: Callable[[str], None] | None = None,
        defer_dense: bool | None = None,
    ) -> IndexSummary:
        summary = summary or IndexSummary()
        t0 = time.perf_counter()
        for item in articles:
            if isinstance(item, Skipped):
                summary.skipped.append(item)
            else:
                try:
                    summary.count(*self.index_article(item, defer_dense))
                except ValueError as exc:
                    summary.skipped.append(Skipped(item.id, str(exc)))
            if on_item:
                on_item(item.path if isinstance(item, Skipped) else item.id)
        summary.seconds += time.perf_counter() - t0
        return summary

    def index_paths(
        self,
        paths: list[Path],
        on_file: Callable[[Path], None] | None = None,
        files: list[Path] | None = None,
        on_item: Callable[[str], None] | None = None,
        urls: list[str] | None = None,
    ) -> IndexSummary:
        """Index files (read with the settings' field mapping) and feed ``urls``; then merge segments."""
        from index.feeds import read_url

        summary = IndexSummary()
        fields = self.settings.field_map
        for f in files if files is not None else list(iter_files(paths)):
            self.index_articles(read_path(f, self.settings.max_file_bytes, fields), summary, on_item=on_item)
            if on_file:
                on_file(f)
        for url in urls or []:
            items = read_url(url, collection_limit(self.settings.max_file_bytes), self.feed_timeout)
            self.index_articles(items, summary, on_item=on_item)
        if summary.added or summary.updated:
            t0 = time.perf_counter()
            self.store.optimize()
            summary.seconds += time.perf_counter() - t0
        return summary
