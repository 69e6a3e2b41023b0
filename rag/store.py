"""The passage store on Qdrant: embedded (local mode) or a server, one code path.

Two collections: ``<name>`` holds chunks (sparse ``lexical`` vector with
Qdrant's IDF modifier, plus a ``dense`` vector when an embedder is configured);
``<name>_documents`` holds one payload-only record per article (content hash,
chunk count) and a manifest saying which embedder and analyzer built the store.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models

from rag.settings import Settings

_NS = uuid.UUID("5a3ad000-0000-4000-8000-000000000000")
_MANIFEST_ID = str(uuid.uuid5(_NS, "manifest"))
LEXICAL = "lexical"
DENSE = "dense"
OWNER_FILE = "sanad-server.json"
log = logging.getLogger("sanad")


class StoreError(RuntimeError):
    """The store cannot be used as configured; the message says what to do."""


class StoreBusy(StoreError):
    pass


class StoreMismatch(StoreError):
    pass


#: The setting behind each manifest entry, named in the message when a store was built otherwise.
MANIFEST_SETTINGS = {
    "analyzer": "Sanad's text analyzer (it changed with an upgrade)",
    "gram_weight": "SANAD_RETRIEVAL__GRAM_WEIGHT",
    "bm25_k1": "SANAD_RETRIEVAL__BM25_K1",
    "bm25_b": "SANAD_RETRIEVAL__BM25_B",
    "bm25_avg_terms": "Sanad's BM25 average length (it changed with an upgrade)",
    "skeleton_weight": "Sanad's name-skeleton weight (it changed with an upgrade)",
    "embedder": "the embedder (SANAD_EMBED__BACKEND, SANAD_EMBED__MODEL)",
    "dense_dim": "SANAD_EMBED__DIMENSION",
}
REBUILD_HINT = "sanad index --rebuild PATH..."


class StoreUnavailable(StoreError):
    pass


def chunk_point_id(doc_id: str, index: int, text: str) -> str:
    """Stable id from the document and the chunk's content: unchanged chunks keep their id."""
    return str(uuid.uuid5(_NS, f"{doc_id}\x00{index}\x00{text}"))


_IS_DOCUMENT = models.FieldCondition(key="kind", match=models.MatchValue(value="document"))


def public_record(record: dict[str, Any]) -> dict[str, Any]:
    """A document record as users see it (API and ``sanad documents --json``): without store internals."""
    return {k: v for k, v in record.items() if k not in ("kind", "content_hash", "minhash", "chunking", "indexed_ts")}


def document_point_id(doc_id: str) -> str:
    return str(uuid.uuid5(_NS, f"doc\x00{doc_id}"))


def _owner_hint(data_dir: Path) -> str:
    owner = data_dir / OWNER_FILE
    try:
        info = json.loads(owner.read_text())
        return f" It is held by a Sanad server (pid {info.get('pid')}) at {info.get('url')}."
    except (OSError, ValueError):
        return ""


def open_client(settings: Settings) -> QdrantClient:
    q = settings.qdrant
    if q.url:
        return QdrantClient(
            url=q.url, api_key=q.api_key.get_secret_value() if q.api_key else None, timeout=math.ceil(q.timeout)
        )
    if settings.qdrant_path == ":memory:":
        return QdrantClient(location=":memory:")
    path = Path(settings.qdrant_path)
    path.mkdir(parents=True, exist_ok=True)
    try:
        if q.engine == "edge":
            from rag.edge import EdgeClient

            return EdgeClient(path / "edge")  # type: ignore[return-value]  # same interface, see rag/edge.py
        return QdrantClient(path=str(path))
    except RuntimeError as exc:
        if "already accessed" not in str(exc):
            raise
        raise StoreBusy(
            f"The store at {path} is in use by another Sanad process.{_owner_hint(settings.data_dir)} "
            "Stop that process, send documents through its API (POST /v1/documents), "
            "or point SANAD_DATA_DIR at another folder."
        ) from None


class PassageStore:
    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        embedder_signature: str,
        dense_dim: int | None,
        lexical: dict[str, str | float],
        reader: str | None = None,
    ) -> None:
        self.client = client
        #: The reader that judges the answers given over this store (``"none"``: none), recorded in the manifest
        #: beside it. Not a setting of the stored vectors: a change is recorded and logged, never a reason to
        #: rebuild, so answers judged by different readers are never mixed silently.
        self.reader = reader
        self.chunks = collection
        self.documents = f"{collection}_documents"
        #: Every setting that changes how a stored vector is computed.
        self.manifest: dict[str, Any] = {**lexical, "embedder": embedder_signature, "dense_dim": dense_dim}
        self.dense_dim = dense_dim

    # -- lifecycle -------------------------------------------------------
    def ensure(self) -> None:
        """Create the collections if missing; refuse a store built by another embedder or analyzer."""
        try:
            exists = self.client.collection_exists(self.chunks)
        except Exception as exc:
            raise StoreUnavailable(f"Qdrant is not reachable: {exc}") from exc
        if not exists:
            dense = (
                {DENSE: models.VectorParams(size=self.dense_dim, distance=models.Distance.COSINE)}
                if self.dense_dim
                else {}
            )
            self.client.create_collection(
                self.chunks,
                vectors_config=dense,
                sparse_vectors_config={LEXICAL: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            )
            # Filtered search at scale needs payload indexes (a server and qdrant-edge use them;
            # local mode ignores them, with a warning that says only that).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self.client.create_payload_index(self.chunks, "doc_id", models.PayloadSchemaType.KEYWORD)
                self.client.create_payload_index(self.chunks, "date_num", models.PayloadSchemaType.INTEGER)
                self.client.create_payload_index(self.chunks, "story_id", models.PayloadSchemaType.KEYWORD)
                self.client.create_payload_index(self.chunks, "dense", models.PayloadSchemaType.INTEGER)
        if not self.client.collection_exists(self.documents):
            self.client.create_collection(self.documents, vectors_config={})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self.client.create_payload_index(self.documents, "story_id", models.PayloadSchemaType.KEYWORD)
        found = self.client.retrieve(self.documents, [_MANIFEST_ID])
        if not found:
            self._write_manifest({"kind": "manifest", **self.manifest})
            return
        stored = found[0].payload or {}
        for key, want in self.manifest.items():
            if key not in stored:
                raise StoreMismatch(
                    f"The collection '{self.chunks}' was built by an older Sanad that did not record "
                    f"{MANIFEST_SETTINGS.get(key, key)}. Vectors computed differently are never mixed: rebuild "
                    f"the index with `{REBUILD_HINT}`, or use a fresh SANAD_DATA_DIR."
                )
            if stored[key] != want:
                raise StoreMismatch(
                    f"The collection '{self.chunks}' was built with {MANIFEST_SETTINGS.get(key, key)} = "
                    f"{stored[key]!r}, but Sanad is configured with {want!r}. Vectors computed differently are "
                    f"never mixed: rebuild the index with these settings (`{REBUILD_HINT}`), or restore the "
                    f"setting that built it, or use a fresh SANAD_DATA_DIR."
                )
        if self.reader is not None and stored.get("reader") != self.reader:
            if "reader" in stored:
                log.warning("the answers over collection %r were judged by the reader %r; from now on by %r",
                            self.chunks, stored["reader"], self.reader)
            self._write_manifest(stored)

    def _write_manifest(self, payload: dict[str, Any]) -> None:
        if self.reader is not None:
            payload = {**payload, "reader": self.reader}
        self.client.upsert(self.documents, [models.PointStruct(id=_MANIFEST_ID, vector={}, payload=payload)])

    def recorded_reader(self) -> str | None:
        """The reader the manifest names (the last process to open the store with a reader configured)."""
        found = self.client.retrieve(self.documents, [_MANIFEST_ID])
        return (found[0].payload or {}).get("reader") if found else None

    def drop(self) -> None:
        """Delete both collections (``sanad index --rebuild``); :meth:`ensure` creates them afresh."""
        for name in (self.chunks, self.documents):
            if self.client.collection_exists(name):
                self.client.delete_collection(name)

    def ping(self) -> None:
        try:
            self.client.collection_exists(self.chunks)
        except Exception as exc:
            raise StoreUnavailable(f"Qdrant is not reachable: {exc}") from exc

    def close(self) -> None:
        self.client.close()

    def optimize(self) -> None:
        """Merge segments after bulk writes (qdrant-edge has no background optimizer)."""
        optimize = getattr(self.client, "optimize", None)
        if callable(optimize):
            optimize()

    # -- documents -------------------------------------------------------
    def get_document(self, doc_id: str) -> dict[str, Any] | None:
        found = self.client.retrieve(self.documents, [document_point_id(doc_id)])
        return dict(found[0].payload or {}) if found else None

    def put_document(self, record: dict[str, Any]) -> None:
        self.client.upsert(
            self.documents,
            [
                models.PointStruct(
                    id=document_point_id(record["doc_id"]), vector={}, payload={"kind": "document", **record}
                )
            ],
        )

    def list_documents(self) -> list[dict[str, Any]]:
        return sorted(self.iter_documents(), key=lambda r: r["doc_id"])

    def documents_page(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Records ``offset`` to ``offset + limit`` in doc id order, and how many there are. Only the ids of
        all are read (a record also holds its story signature, hundreds of numbers); then the page's records."""
        ids = sorted(r["doc_id"] for r in self.iter_documents(["doc_id"]))
        page = ids[offset : offset + limit]
        if not page:
            return [], len(ids)
        flt = models.Filter(must=[_IS_DOCUMENT, models.FieldCondition(key="doc_id", match=models.MatchAny(any=page))])
        points, _ = self.client.scroll(self.documents, scroll_filter=flt, limit=len(page), with_payload=True)
        return sorted((dict(p.payload or {}) for p in points), key=lambda r: r["doc_id"]), len(ids)

    def iter_documents(self, fields: list[str] | None = None, where: dict[str, str] | None = None,
                       indexed_since: float | None = None) -> Iterator[dict[str, Any]]:
        """Document records (only ``fields`` of each, when given), optionally those matching ``where`` and those
        indexed at or after ``indexed_since`` (seconds since the epoch)."""
        must: list[models.Condition] = [
            _IS_DOCUMENT,
            *(models.FieldCondition(key=k, match=models.MatchValue(value=v)) for k, v in (where or {}).items()),
        ]
        if indexed_since is not None:
            must.append(models.FieldCondition(key="indexed_ts", range=models.Range(gte=indexed_since)))
        selector: models.PayloadSelector | bool = models.PayloadSelectorInclude(include=fields) if fields else True
        offset = None
        while True:
            points, offset = self.client.scroll(self.documents, scroll_filter=models.Filter(must=must), limit=512,
                                                offset=offset, with_payload=selector)
            for p in points:
                yield dict(p.payload or {})
            if offset is None:
                return

    def story_documents(self, story_id: str) -> list[dict[str, Any]]:
        """The records of the articles that carry one story (syndicated copies), by doc id."""
        fields = ["doc_id", "title", "source", "url", "date", "story_id"]
        return sorted(self.iter_documents(fields, {"story_id": story_id}), key=lambda r: r["doc_id"])

    def document_chunks(self, doc_id: str) -> list[dict[str, Any]]:
        """A document's chunk payloads, in order."""
        flt = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))])
        points, _ = self.client.scroll(self.chunks, scroll_filter=flt, limit=10_000, with_payload=True)
        return sorted((dict(p.payload or {}) for p in points), key=lambda pl: pl.get("chunk_index", 0))

    # -- dense vectors filled in after a bulk run -------------------------------
    # ``dense`` is 0 (to come) or 1, not a bool: qdrant-edge 0.9 matches no point on a bool value.
    _PENDING = models.Filter(must=[models.FieldCondition(key="dense", match=models.MatchValue(value=0))])

    def count_dense_pending(self) -> int:
        """Chunks indexed lexically whose dense vector is still to come (0 for a store without an embedder)."""
        if not self.dense_dim:
            return 0
        return self.client.count(self.chunks, count_filter=self._PENDING, exact=True).count

    def dense_pending(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``limit`` such chunks, as (point id, payload): the newest articles' first (the news a reader
        asks about), then undated ones (an ordered scroll leaves out points without the date)."""
        newest = models.OrderBy(key="date_num", direction=models.Direction.DESC)
        try:
            points, _ = self.client.scroll(self.chunks, scroll_filter=self._PENDING, limit=limit,
                                           with_payload=True, order_by=newest)
        except Exception as exc:  # a server collection without the date index: fill in any order
            log.debug("newest-first order unavailable (%s); filling in store order", exc)
            points = []
        if len(points) < limit:
            ids = {str(p.id) for p in points}
            rest, _ = self.client.scroll(self.chunks, scroll_filter=self._PENDING, limit=limit + len(points),
                                         with_payload=True)
            points = [*points, *(p for p in rest if str(p.id) not in ids)][:limit]
        return [(str(p.id), dict(p.payload or {})) for p in points]

    def existing_chunk_ids(self, ids: list[str]) -> set[str]:
        return {str(p.id) for p in self.client.retrieve(self.chunks, ids, with_payload=False)}

    def upsert_chunks(self, points: list[models.PointStruct]) -> None:
        if points:
            self.client.upsert(self.chunks, points, wait=True)

    def delete_chunks(self, doc_id: str, keep: list[str] | None = None) -> None:
        """Remove a document's chunks, except ids in ``keep`` (its current ones)."""
        must_not: list[models.Condition] = [models.HasIdCondition(has_id=list(keep))] if keep else []
        flt = models.Filter(
            must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))], must_not=must_not
        )
        self.client.delete(self.chunks, points_selector=models.FilterSelector(filter=flt), wait=True)

    def delete_document(self, doc_id: str) -> bool:
        existed = self.get_document(doc_id) is not None
        self.delete_chunks(doc_id)
        self.client.delete(
            self.documents, points_selector=models.PointIdsList(points=[document_point_id(doc_id)]), wait=True
        )
        return existed

    def count_chunks(self, doc_id: str | None = None) -> int:
        flt = None
        if doc_id is not None:
            flt = models.Filter(must=[models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id))])
        return self.client.count(self.chunks, count_filter=flt, exact=True).count

    def count_documents(self) -> int:
        """Document records, counted (not listed: a metrics scrape must not read every record)."""
        return self.client.count(self.documents, count_filter=models.Filter(must=[_IS_DOCUMENT]), exact=True).count

    # -- search ----------------------------------------------------------
    def search(
        self,
        sparse: models.SparseVector,
        dense: list[float] | None,
        limit: int,
        candidates: int,
        query_filter: models.Filter | None,
        fusion: str = "formula",
        lexical_weight: float = 0.2,
        lexical_saturation: float = 20.0,
        pending: tuple[float, float] = (0.0, 0.0),
    ) -> list[models.ScoredPoint]:
        """Hybrid when ``dense`` is given, else lexical. ``pending`` (offset, slope): the cosine estimated for a
        chunk whose dense vector is still to come, from its squashed lexical score (see RetrievalSettings)."""
        if dense is None:
            res = self.client.query_points(
                self.chunks, query=sparse, using=LEXICAL, limit=limit, query_filter=query_filter, with_payload=True
            )
            return res.points
        prefetch = [
            models.Prefetch(query=dense, using=DENSE, limit=candidates, filter=query_filter),
            models.Prefetch(query=sparse, using=LEXICAL, limit=candidates, filter=query_filter),
        ]
        query: models.Query
        if fusion == "formula":
            # $score[0] dense cosine, $score[1] raw lexical score squashed into [0, 1); absent from a list: 0.
            squashed = models.DivExpression(div=models.DivParams(
                left="$score[1]", right=models.SumExpression(sum=["$score[1]", lexical_saturation]),
                by_zero_default=0.0,
            ))
            offset, slope = pending
            # A chunk without its vector yet is absent from the dense list; in its place, an estimate from its
            # lexical score. The condition is 1 for such a chunk and 0 for every other: one ranking for both.
            estimate = models.MultExpression(mult=[
                models.FieldCondition(key="dense", match=models.MatchValue(value=0)),
                models.SumExpression(sum=[offset, models.MultExpression(mult=[slope, squashed])]),
            ])
            query = models.FormulaQuery(
                formula=models.SumExpression(
                    sum=["$score[0]", models.MultExpression(mult=[lexical_weight, squashed]), estimate]
                ),
                defaults={"$score[0]": 0.0, "$score[1]": 0.0},
            )
        else:
            query = models.FusionQuery(fusion=models.Fusion.DBSF if fusion == "dbsf" else models.Fusion.RRF)
        res = self.client.query_points(self.chunks, prefetch=prefetch, query=query, limit=limit, with_payload=True)
        return res.points
