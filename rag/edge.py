"""The embedded store on qdrant-edge (Qdrant's embeddable Rust engine), behind the
subset of the ``QdrantClient`` interface that ``rag.store.PassageStore`` uses.

Why: qdrant-client's local mode scores sparse vectors in pure Python over every
point, per query: measured 0.3 s at 1k chunks and 4 s at 10k (evals/bench,
docs/benchmarks.md, "Scale of the embedded store"). qdrant-edge answers the same queries, with the same results,
in milliseconds at 100k. Written here because qdrant-edge has its own API;
this adapter lets the rest of Sanad keep qdrant-client's models and one code
path for embedded, in-memory (local mode) and server stores.

``EdgeClient(path)`` keeps one ``qdrant_edge.EdgeShard`` per collection under
``<path>/collections/<name>/``; it takes qdrant-client ``models`` objects and
returns qdrant-client ``models`` objects, so ``PassageStore(EdgeClient(path), ...)``
works unchanged. Covered: collection_exists, create_collection, delete_collection,
retrieve, upsert, scroll (optionally ordered by a payload key), delete (ids or filter), count, query_points (plain
nearest, or prefetch + RRF/DBSF fusion), close. Filters: must/should/must_not/
min_should, MatchValue/MatchAny/MatchExcept/MatchText, Range/DatetimeRange,
HasId, IsEmpty, IsNull, nested Filter.

Differences from local mode, handled here:
* qdrant-edge has no payload-only collections: a placeholder sparse vector
  ``_none`` is configured when ``vectors_config`` and ``sparse_vectors_config``
  are both empty.
* UUID point ids come back as ``uuid.UUID``: returned as ``str`` like qdrant-client.
* One process at a time: a second opener fails; as with local mode the error is a
  ``RuntimeError`` saying "already accessed", which ``rag.store.open_client`` maps
  to ``StoreBusy``.
* No background optimizer: ``optimize()`` merges segments/vacuums deletes; call it
  after large re-indexing (``close`` only flushes).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from qdrant_client import models
from qdrant_client.http.models import CountResult, QueryResponse, Record, ScoredPoint

_PLACEHOLDER = "_none"
_META = "sanad-edge-collection.json"
_DEFAULT_RRF_K = 2  # qdrant-client / server default


def _distance(d: models.Distance) -> qe.Distance:
    return {
        models.Distance.COSINE: qe.Distance.Cosine,
        models.Distance.DOT: qe.Distance.Dot,
        models.Distance.EUCLID: qe.Distance.Euclid,
        models.Distance.MANHATTAN: qe.Distance.Manhattan,
    }[d]


def _out_id(pid: Any) -> int | str:
    return str(pid) if isinstance(pid, uuid.UUID) else pid


def _in_id(pid: Any) -> int | str:
    return str(pid) if isinstance(pid, uuid.UUID) else pid


# -- filters -------------------------------------------------------------------
def _match(m: Any) -> Any:
    if isinstance(m, models.MatchValue):
        return qe.MatchValue(m.value)
    if isinstance(m, models.MatchAny):
        return qe.MatchAny(list(m.any))  # type: ignore[arg-type]  # ints or strs, as given
    if isinstance(m, models.MatchExcept):
        return qe.MatchExcept(list(m.except_))  # type: ignore[arg-type]
    if isinstance(m, models.MatchText):
        return qe.MatchText(m.text)
    if isinstance(m, models.MatchPhrase):
        return qe.MatchPhrase(m.phrase)
    raise NotImplementedError(f"match {type(m).__name__}")


def _range(r: Any) -> Any:
    if isinstance(r, models.DatetimeRange):
        iso = lambda v: None if v is None else (v if isinstance(v, str) else v.isoformat())  # noqa: E731
        return qe.RangeDateTime(gt=iso(r.gt), gte=iso(r.gte), lt=iso(r.lt), lte=iso(r.lte))
    return qe.RangeFloat(gt=r.gt, gte=r.gte, lt=r.lt, lte=r.lte)


def _condition(c: Any) -> Any:
    if isinstance(c, models.Filter):
        return to_filter(c)
    if isinstance(c, models.FieldCondition):
        if c.geo_bounding_box or c.geo_radius or c.geo_polygon or c.values_count:
            raise NotImplementedError("geo / values_count conditions")
        return qe.FieldCondition(
            c.key,
            match=_match(c.match) if c.match is not None else None,
            range=_range(c.range) if c.range is not None else None,
            is_empty=c.is_empty,
            is_null=c.is_null,
        )
    if isinstance(c, models.HasIdCondition):
        return qe.HasIdCondition({_in_id(i) for i in c.has_id})
    if isinstance(c, models.IsEmptyCondition):
        return qe.IsEmptyCondition(c.is_empty.key)
    if isinstance(c, models.IsNullCondition):
        return qe.IsNullCondition(c.is_null.key)
    if isinstance(c, models.NestedCondition):
        return qe.NestedCondition(c.nested.key, _required(c.nested.filter))
    if isinstance(c, models.HasVectorCondition):
        return qe.HasVectorCondition(c.has_vector)
    raise NotImplementedError(f"condition {type(c).__name__}")


def _conds(cs: Any) -> list | None:
    if cs is None:
        return None
    cs = cs if isinstance(cs, list) else [cs]
    return [_condition(c) for c in cs]


def to_filter(f: models.Filter | None) -> qe.Filter | None:
    if f is None:
        return None
    min_should = None
    if f.min_should is not None:
        min_should = qe.MinShould(_conds(f.min_should.conditions) or [], f.min_should.min_count)
    return qe.Filter(must=_conds(f.must), should=_conds(f.should), must_not=_conds(f.must_not), min_should=min_should)


def _required(f: models.Filter) -> qe.Filter:
    out = to_filter(f)
    assert out is not None
    return out


# -- vectors / queries -----------------------------------------------------------
def _vec(v: Any) -> Any:
    if isinstance(v, models.SparseVector):
        return qe.SparseVector(list(v.indices), [float(x) for x in v.values])
    if isinstance(v, list):
        return [float(x) for x in v]
    raise NotImplementedError(f"vector {type(v).__name__}")


def _point_vector(vector: Any) -> Any:
    if isinstance(vector, dict):
        return {name: _vec(v) for name, v in vector.items()}
    return _vec(vector)


def _vector_out(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, dict):
        return {k: _vector_out(x) for k, x in v.items()}
    if isinstance(v, qe.SparseVector):
        return models.SparseVector(indices=list(v.indices), values=list(v.values))
    return v


def _expression(e: Any) -> Any:
    """A qdrant-client formula expression as a qdrant-edge ``Expression`` (arithmetic and conditions)."""
    E = qe.Expression
    if isinstance(e, bool):
        raise NotImplementedError("bool expression")
    if isinstance(e, int | float):
        return E.Constant(float(e))
    if isinstance(e, str):
        return E.Variable(e)
    if isinstance(e, models.SumExpression):
        return E.Sum([_expression(x) for x in e.sum])
    if isinstance(e, models.MultExpression):
        return E.Mult([_expression(x) for x in e.mult])
    if isinstance(e, models.DivExpression):
        return E.Div(_expression(e.div.left), _expression(e.div.right), e.div.by_zero_default)
    if isinstance(e, models.MaxExpression):
        return E.Max([_expression(x) for x in e.max])
    if isinstance(e, models.MinExpression):
        return E.Min([_expression(x) for x in e.min])
    if isinstance(e, models.FieldCondition | models.HasIdCondition | models.IsEmptyCondition | models.IsNullCondition):
        return E.Condition(_condition(e))  # 1.0 where the point matches, else 0.0
    raise NotImplementedError(f"expression {type(e).__name__}")


def _query(q: Any, using: str | None) -> Any:
    if q is None:
        return None
    if isinstance(q, models.NearestQuery):
        return _query(q.nearest, using)
    if isinstance(q, models.SparseVector | list):
        return qe.Query.Nearest(_vec(q), using=using)
    if isinstance(q, models.FusionQuery):
        return qe.Fusion.Dbsf() if q.fusion == models.Fusion.DBSF else qe.Fusion.Rrf(k=_DEFAULT_RRF_K)
    if isinstance(q, models.RrfQuery):
        return qe.Fusion.Rrf(k=q.rrf.k or _DEFAULT_RRF_K, weights=q.rrf.weights)
    if isinstance(q, models.FormulaQuery):
        return qe.Formula(_expression(q.formula), defaults=q.defaults or None)
    raise NotImplementedError(f"query {type(q).__name__}")


def _prefetch(p: models.Prefetch) -> qe.Prefetch:
    subs = p.prefetch if isinstance(p.prefetch, list) else ([p.prefetch] if p.prefetch else None)
    return qe.Prefetch(
        limit=p.limit or 10,
        query=_query(p.query, p.using),
        prefetches=[_prefetch(s) for s in subs] if subs else None,
        filter=to_filter(p.filter),
        score_threshold=p.score_threshold,
    )


def _with_payload(w: Any) -> Any:
    if isinstance(w, models.PayloadSelectorInclude):
        return qe.PayloadSelector.Include(list(w.include))
    if isinstance(w, models.PayloadSelectorExclude):
        return qe.PayloadSelector.Exclude(list(w.exclude))
    return w


def _record(r: Any) -> Record:
    return Record(id=_out_id(r.id), payload=r.payload, vector=_vector_out(r.vector))


class EdgeClient:
    """Thin qdrant-client look-alike over qdrant-edge shards (one per collection)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.root = Path(path)
        (self.root / "collections").mkdir(parents=True, exist_ok=True)
        self._lockfile = open(self.root / ".edge.lock", "a+")  # noqa: SIM115
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise RuntimeError(
                f"Storage folder {self.root} is already accessed by another instance of Qdrant Edge client."
            ) from None
        self._shards: dict[str, qe.EdgeShard] = {}
        self._mutex = threading.RLock()
        for d in sorted((self.root / "collections").iterdir()):
            if (d / _META).exists():
                self._shards[d.name] = qe.EdgeShard.load(str(d))

    # -- collections -------------------------------------------------------------
    def _shard(self, name: str) -> qe.EdgeShard:
        try:
            return self._shards[name]
        except KeyError:
            raise ValueError(f"Collection {name} not found") from None

    def collection_exists(self, collection_name: str) -> bool:
        return collection_name in self._shards

    def get_collections(self) -> models.CollectionsResponse:
        return models.CollectionsResponse(collections=[models.CollectionDescription(name=n) for n in self._shards])

    def create_collection(
        self,
        collection_name: str,
        vectors_config: Any = None,
        sparse_vectors_config: dict[str, models.SparseVectorParams] | None = None,
        **_: Any,
    ) -> bool:
        with self._mutex:
            if collection_name in self._shards:
                raise ValueError(f"Collection {collection_name} already exists")
            dense: dict[str, qe.EdgeVectorParams] = {}
            if isinstance(vectors_config, models.VectorParams):
                dense[""] = qe.EdgeVectorParams(size=vectors_config.size, distance=_distance(vectors_config.distance))
            elif vectors_config:
                dense = {
                    n: qe.EdgeVectorParams(size=p.size, distance=_distance(p.distance))
                    for n, p in vectors_config.items()
                }
            sparse = {
                n: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf if p.modifier == models.Modifier.IDF else None)
                for n, p in (sparse_vectors_config or {}).items()
            }
            if not dense and not sparse:
                sparse = {_PLACEHOLDER: qe.EdgeSparseVectorParams()}
            d = self.root / "collections" / collection_name
            if d.exists():
                shutil.rmtree(d)
            shard = qe.EdgeShard.create(str(d), qe.EdgeConfig(vectors=dense or None, sparse_vectors=sparse or None))
            (d / _META).write_text(json.dumps({"name": collection_name}))
            self._shards[collection_name] = shard
            return True

    def delete_collection(self, collection_name: str, **_: Any) -> bool:
        with self._mutex:
            shard = self._shards.pop(collection_name, None)
            if shard is None:
                return False
            shard.close()
            shutil.rmtree(self.root / "collections" / collection_name, ignore_errors=True)
            return True

    def create_payload_index(
        self, collection_name: str, field_name: str, field_schema: Any = None, **_: Any
    ) -> models.UpdateResult:
        """Keyword/integer/float/bool/datetime/uuid/text index; needed for fast filtered search at scale."""
        kind = getattr(field_schema, "type", field_schema)  # PayloadSchemaType or *IndexParams
        kind = getattr(kind, "value", kind)
        schema = {
            "keyword": qe.PayloadSchemaType.Keyword,
            "integer": qe.PayloadSchemaType.Integer,
            "float": qe.PayloadSchemaType.Float,
            "bool": qe.PayloadSchemaType.Bool,
            "datetime": qe.PayloadSchemaType.Datetime,
            "uuid": qe.PayloadSchemaType.Uuid,
            "text": qe.PayloadSchemaType.Text,
            "geo": qe.PayloadSchemaType.Geo,
        }[str(kind)]
        self._shard(collection_name).update(qe.UpdateOperation.create_field_index(field_name, schema))
        return models.UpdateResult(operation_id=None, status=models.UpdateStatus.COMPLETED)

    # -- points ----------------------------------------------------------------------
    def upsert(self, collection_name: str, points: Any, wait: bool = True, **_: Any) -> models.UpdateResult:
        if isinstance(points, models.Batch):
            raise NotImplementedError("Batch upsert: pass a list of PointStruct")
        pts = [qe.Point(_in_id(p.id), _point_vector(p.vector), p.payload) for p in points]
        self._shard(collection_name).update(qe.UpdateOperation.upsert_points(pts))
        return models.UpdateResult(operation_id=None, status=models.UpdateStatus.COMPLETED)

    def delete(self, collection_name: str, points_selector: Any, wait: bool = True, **_: Any) -> models.UpdateResult:
        shard = self._shard(collection_name)
        sel = points_selector
        if isinstance(sel, models.FilterSelector):
            op = qe.UpdateOperation.delete_points_by_filter(_required(sel.filter))
        elif isinstance(sel, models.Filter):
            op = qe.UpdateOperation.delete_points_by_filter(_required(sel))
        elif isinstance(sel, models.PointIdsList):
            op = qe.UpdateOperation.delete_points([_in_id(i) for i in sel.points])
        else:
            op = qe.UpdateOperation.delete_points([_in_id(i) for i in sel])
        shard.update(op)
        return models.UpdateResult(operation_id=None, status=models.UpdateStatus.COMPLETED)

    def retrieve(
        self, collection_name: str, ids: list, with_payload: Any = True, with_vectors: Any = False, **_: Any
    ) -> list[Record]:
        found = self._shard(collection_name).retrieve(
            [_in_id(i) for i in ids], _with_payload(with_payload), with_vectors
        )
        return [_record(r) for r in found]

    def scroll(
        self,
        collection_name: str,
        scroll_filter: models.Filter | None = None,
        limit: int = 10,
        offset: Any = None,
        with_payload: Any = True,
        with_vectors: Any = False,
        order_by: Any = None,
        **_: Any,
    ) -> tuple[list[Record], Any]:
        order = None
        if order_by is not None:  # as in Qdrant: only points that have the key, and no offset paging
            key, desc = (order_by, False) if isinstance(order_by, str) else (order_by.key, order_by.direction == "desc")
            order = qe.OrderBy(key, direction=qe.Direction.Desc if desc else qe.Direction.Asc)
        recs, nxt = self._shard(collection_name).scroll(
            qe.ScrollRequest(
                offset=_in_id(offset) if offset is not None else None,
                limit=limit,
                filter=to_filter(scroll_filter),
                with_payload=_with_payload(with_payload),
                with_vector=with_vectors,
                order_by=order,
            )
        )
        return [_record(r) for r in recs], (_out_id(nxt) if nxt is not None else None)

    def count(
        self, collection_name: str, count_filter: models.Filter | None = None, exact: bool = True, **_: Any
    ) -> CountResult:
        n = self._shard(collection_name).count(qe.CountRequest(exact=exact, filter=to_filter(count_filter)))
        return CountResult(count=n)

    def query_points(
        self,
        collection_name: str,
        query: Any = None,
        using: str | None = None,
        prefetch: Any = None,
        query_filter: models.Filter | None = None,
        limit: int = 10,
        offset: int | None = None,
        with_payload: Any = True,
        with_vectors: Any = False,
        score_threshold: float | None = None,
        **_: Any,
    ) -> QueryResponse:
        prefetches = prefetch if isinstance(prefetch, list) else ([prefetch] if prefetch else None)
        req = qe.QueryRequest(
            limit=limit,
            offset=offset,
            query=_query(query, using),
            prefetches=[_prefetch(p) for p in prefetches] if prefetches else None,
            filter=to_filter(query_filter),
            with_payload=_with_payload(with_payload),
            with_vector=with_vectors,
            score_threshold=score_threshold,
        )
        res = self._shard(collection_name).query(req)
        return QueryResponse(
            points=[
                ScoredPoint(
                    id=_out_id(p.id),
                    version=p.version or 0,
                    score=p.score,
                    payload=p.payload,
                    vector=_vector_out(p.vector),
                )
                for p in res
            ]
        )

    # -- lifecycle -------------------------------------------------------------------
    def optimize(self) -> None:
        for shard in self._shards.values():
            shard.optimize()

    def close(self, **_: Any) -> None:
        with self._mutex:
            for shard in self._shards.values():
                shard.flush()
                shard.close()
            self._shards.clear()
            if not self._lockfile.closed:
                fcntl.flock(self._lockfile, fcntl.LOCK_UN)
                self._lockfile.close()
