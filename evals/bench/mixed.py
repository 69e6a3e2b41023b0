"""``sanad bench mixed``: retrieval while the dense vectors are being filled in.

A chunk with its dense vector is ranked hybrid; one still waiting is ranked by its lexical score alone, given
an estimated cosine ``pending_offset + pending_slope * squash(s)`` (``RetrievalSettings``), in one ranking.
This measures that ranking with a seeded share of the chunks filled (25%, 50%, 75%, 100%), beside all-lexical
retrieval (what every question got while any chunk waited, before this release) and all-hybrid, on two sets:

* ``xquad``: XQuAD's 240 Arabic paragraphs, its Arabic questions and the parallel English ones (`sanad
  squad-convert` outputs, given as folders);
* ``news``: one SaudiNewsNet day (all its articles) plus the articles the 17-day gold questions come from,
  every gold question of both gold files asked (the 17 days' dense pass takes over four hours on 2 cores:
  this is the archive-like set whose vectors can be computed in a session).

``--fit`` chooses the offset and slope on the dev items only (grid search; the ranking is simulated in numpy
from the store's own lexical scores and the cosines, candidates as the Query API's prefetch takes them), and
the table reports dev and test items apart, test never fitted on.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import models

from evals.bench.archive import _map_gold, _url_key
from evals.bench.common import Report
from evals.gold import GoldItem, load_gold
from evals.runner import distinct_docs
from index.ingest import Indexer
from index.readers import Skipped, iter_files, read_path
from rag.engine import Sanad
from rag.models import Article
from rag.settings import Settings
from rag.store import DENSE, LEXICAL

FRACTIONS = (0.25, 0.5, 0.75)
TOP = 40  # passages asked for; hits are counted on their distinct articles, as `sanad bench archive` does


@dataclass
class Corpus:
    name: str
    articles: list[Article]
    items: list[GoldItem]
    engine: Sanad | None = None
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    points: dict[str, models.Record] = field(default_factory=dict)


def xquad_corpus(folders: list[Path]) -> Corpus:
    """The paragraphs of the first folder's corpus; the gold items of all (the same paragraphs)."""
    import json

    articles = [Article.model_validate(json.loads(line))
                for line in (folders[0] / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    items = [i for f in folders for i in load_gold(f / "gold.jsonl")]
    return Corpus("xquad", articles, items)


def news_corpus(archive: Path, day: str, gold: list[Path], fields: dict[str, str] | None) -> Corpus:
    """All articles of ``day`` and the articles the gold questions come from (matched by URL, as the archive
    bench does), gold sources renamed to the indexed ids."""
    items = [i for g in gold for i in load_gold(g)]
    wanted = {s.removeprefix("snn-") for i in items for s in i.sources}  # as archive._map_gold reads them
    articles: list[Article] = []
    by_url: dict[str, str] = {}
    for f in iter_files([archive]):
        for a in read_path(f, 1 << 30, fields):
            if isinstance(a, Skipped):
                continue
            key = _url_key(a.url)
            if f.stem == day or key in wanted:
                articles.append(a)
                if key is not None:
                    by_url[key] = a.id
    return Corpus("news", articles, _map_gold(items, by_url))


def build(corpus: Corpus, folder: Path) -> None:
    """Index lexically, fill every dense vector (cached by content: a rerun computes none), keep them."""
    settings = Settings(data_dir=folder / corpus.name)
    settings.embed.threads = 2  # as `sanad index` runs the dense pass on this machine
    settings.index.sentence_vectors = False  # retrieval only: the answerer's sentence vectors are not needed
    engine = Sanad.open(settings)
    indexer = Indexer(engine.store, engine.encoder, engine.embedder, settings.index, defer_dense=True)
    indexer.index_articles(corpus.articles)
    indexer.fill_dense(batch=16)
    offset = None
    while True:
        pts, offset = engine.store.client.scroll(engine.store.chunks, limit=512, offset=offset,
                                                 with_payload=True, with_vectors=True)
        for p in pts:
            corpus.points[str(p.id)] = p
            corpus.vectors[str(p.id)] = np.asarray((p.vector or {})[DENSE], dtype=np.float32)  # type: ignore[index,call-overload]
        if offset is None:
            break
    corpus.engine = engine


def set_filled(corpus: Corpus, share: float, seed: int) -> None:
    """A seeded ``share`` of the chunks with their dense vector, the rest waiting (as a fill in progress)."""
    assert corpus.engine is not None
    ids = sorted(corpus.points)
    filled = set(random.Random(seed).sample(ids, round(share * len(ids))))
    pts = []
    for pid in ids:
        p = corpus.points[pid]
        vec: dict[str, Any] = {LEXICAL: (p.vector or {})[LEXICAL]}  # type: ignore[index,call-overload]
        if pid in filled:
            vec[DENSE] = corpus.vectors[pid].tolist()
        pts.append(models.PointStruct(id=pid, vector=vec, payload={**(p.payload or {}), "dense": int(pid in filled)}))
    store = corpus.engine.store
    for i in range(0, len(pts), 256):
        store.upsert_chunks(pts[i : i + 256])


def _hits(ranked: list[list[str]], items: list[GoldItem]) -> dict[str, float]:
    pairs = [(r, i) for r, i in zip(ranked, items, strict=True) if i.answerable]
    return {f"hit@{k}": round(sum(any(d in i.sources for d in r[:k]) for r, i in pairs) / max(len(pairs), 1), 3)
            for k in (1, 10)} | {"n": len(pairs)}


def ranked(corpus: Corpus, items: list[GoldItem], lexical_only: bool = False) -> list[list[str]]:
    engine = corpus.engine
    assert engine is not None
    return [distinct_docs([p.doc_id for p in engine.retriever.search(i.question, top_k=TOP,
                                                                     query_vector=None if lexical_only else "compute")])
            for i in items]


# -- the fit: the same ranking, simulated in numpy -------------------------------------------------------------
@dataclass
class _Query:
    item: GoldItem
    cos: np.ndarray  # cosine with every chunk (order of ``ids``)
    lex_idx: np.ndarray  # the lexical prefetch: chunk indices
    lex_raw: np.ndarray  # and their raw lexical scores


def _queries(corpus: Corpus, items: list[GoldItem], candidates: int) -> tuple[list[str], list[_Query]]:
    engine = corpus.engine
    assert engine is not None
    ids = sorted(corpus.points)
    where = {pid: n for n, pid in enumerate(ids)}
    matrix = np.stack([corpus.vectors[pid] for pid in ids])
    out = []
    for item in items:
        qv = engine.retriever.query_vector(item.question)
        cos = matrix @ np.asarray(qv, dtype=np.float32) if qv is not None else np.zeros(len(ids), np.float32)
        sparse = engine.encoder.query(item.question)
        pts = engine.store.search(sparse, None, limit=candidates, candidates=candidates, query_filter=None) \
            if sparse.indices else []
        out.append(_Query(item, cos, np.array([where[str(p.id)] for p in pts], dtype=int),
                          np.array([float(p.score) for p in pts], dtype=np.float32)))
    return ids, out


def _simulate(corpus: Corpus, ids: list[str], queries: list[_Query], filled: np.ndarray, offset: float,
              slope: float, weight: float, saturation: float, candidates: int) -> list[list[str]]:
    docs = [str((corpus.points[pid].payload or {})["doc_id"]) for pid in ids]
    out = []
    for q in queries:
        cos = np.where(filled, q.cos, -np.inf)
        dense_idx = np.argpartition(-cos, min(candidates, len(cos) - 1))[:candidates]
        dense_idx = dense_idx[np.isfinite(cos[dense_idx])]
        score: dict[int, float] = {int(i): float(q.cos[i]) for i in dense_idx}
        for i, s in zip(q.lex_idx, q.lex_raw, strict=True):
            sq = s / (s + saturation)
            extra = weight * sq + (0.0 if filled[i] else offset + slope * sq)
            score[int(i)] = score.get(int(i), 0.0) + extra
        order = sorted(score, key=lambda i: -score[i])[: TOP * 4]
        out.append(distinct_docs([docs[i] for i in order]))
    return out


def fit(corpora: list[Corpus], seed: int) -> tuple[float, float, list[dict[str, Any]]]:
    """Offset and slope maximising mean (hit@1 + hit@10) / 2 over the dev items of each set and language
    (weighted equally) at 25, 50 and 75% filled."""
    r = corpora[0].engine.settings.retrieval  # type: ignore[union-attr]
    cand = max(r.candidates, TOP * 4)
    groups = []
    for c in corpora:
        dev = [i for i in c.items if i.split == "dev" and i.answerable]
        ids, qs = _queries(c, dev, cand)
        masks = []
        for share in FRACTIONS:
            rng = random.Random(seed)
            chosen = set(rng.sample(ids, round(share * len(ids))))
            masks.append(np.array([pid in chosen for pid in ids]))
        for lang in sorted({i.lang for i in dev}):
            groups.append((c, ids, [q for q in qs if q.item.lang == lang], masks))
    grid = []
    for offset in np.arange(0.5, 0.951, 0.025):
        for slope in np.arange(0.0, 0.61, 0.05):
            per = []
            for c, ids, qs, masks in groups:
                for mask in masks:
                    h = _hits(_simulate(c, ids, qs, mask, float(offset), float(slope), r.lexical_weight,
                                        r.lexical_saturation, cand), [q.item for q in qs])
                    per.append((h["hit@1"] + h["hit@10"]) / 2)
            grid.append({"offset": round(float(offset), 3), "slope": round(float(slope), 3),
                         "objective": round(float(np.mean(per)), 4)})
    best = max(grid, key=lambda g: (g["objective"], -g["slope"], -g["offset"]))
    return best["offset"], best["slope"], grid


def run(xquad: list[Path], archive: Path | None, day: str, gold: list[Path], out: Path, seed: int = 7,
        do_fit: bool = False, data_dir: Path | None = None,
        pending: tuple[float, float] | None = None) -> dict[str, Any]:
    folder = data_dir or Path(tempfile.mkdtemp(prefix="sanad-mixed-"))
    rep = Report("mixed", "Retrieval while dense vectors are filled in (mixed ranking)", out)
    corpora = []
    if xquad:
        corpora.append(xquad_corpus(xquad))
    if archive is not None:
        corpora.append(news_corpus(archive, day, gold, Settings(data_dir=folder).index.field_map))
    for c in corpora:
        build(c, folder)
        rep.data[f"{c.name}_size"] = {"articles": len(c.articles), "chunks": len(c.points), "items": len(c.items)}
    rs = corpora[0].engine.settings.retrieval  # type: ignore[union-attr]
    offset, slope = pending if pending is not None else (rs.pending_offset, rs.pending_slope)
    if do_fit:
        offset, slope, grid = fit(corpora, seed)
        rep.data["fit"] = {"offset": offset, "slope": slope, "seed": seed, "best": max(g["objective"] for g in grid)}
        rep.note(f"Fitted on dev items: pending_offset = {offset}, pending_slope = {slope}")
    rows, data = [], {}
    for c in corpora:
        eng = c.engine
        assert eng is not None
        for split in ("dev", "test"):
            for lang in sorted({i.lang for i in c.items}):
                items = [i for i in c.items if i.split == split and i.lang == lang]
                if not any(i.answerable for i in items):
                    continue
                key = f"{c.name} {lang} {split}"
                res: dict[str, Any] = {}
                set_filled(c, 1.0, seed)
                res["lexical"] = _hits(ranked(c, items, lexical_only=True), items)
                res["hybrid 100%"] = _hits(ranked(c, items), items)
                for share in FRACTIONS:
                    set_filled(c, share, seed)
                    for label, (a, b) in (("mixed", (offset, slope)), ("uncalibrated", (0.0, 0.0))):
                        eng.retriever.settings = rs.model_copy(update={"pending_offset": a, "pending_slope": b})
                        res[f"{label} {round(share * 100)}%"] = _hits(ranked(c, items), items)
                    eng.retriever.settings = rs.model_copy(update={"pending_offset": offset, "pending_slope": slope})
                data[key] = res
                for label, h in res.items():
                    rows.append([key, label, h["n"], h["hit@1"], h["hit@10"]])
        set_filled(c, 1.0, seed)
        eng.close()
    rep.data["results"] = data
    rep.data["pending"] = {"offset": offset, "slope": slope}
    rep.table(f"hit@1 / hit@10 (distinct articles of the top {TOP} passages); share of chunks filled, seed {seed}",
              ["set", "ranking", "answerable", "hit@1", "hit@10"], rows)
    rep.write()
    return rep.data


# -- a whole archive, filled newest first as the service does it -----------------------------------------------
def archive_progress(paths: list[Path], gold: list[Path], out: Path, data_dir: Path,
                     stops: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)) -> dict[str, Any]:
    """Index ``paths`` lexically, then fill the dense vectors newest first, stopping at each share of ``stops``
    to ask the gold questions (hit@1 / hit@10, by language and split). Resumable: the index and the fill
    state live in ``data_dir`` (a rerun measures the stops already passed again, then goes on). Results are
    written after every stop, so a run cut short keeps what it measured."""
    rep = Report("mixed-archive", f"Retrieval while a whole archive is filled in, newest first ({len(paths)} "
                 "paths)", out)
    settings = Settings(data_dir=data_dir)
    settings.embed.threads = 2
    settings.index.sentence_vectors = False  # retrieval only
    engine = Sanad.open(settings)
    try:
        indexer = Indexer(engine.store, engine.encoder, engine.embedder, settings.index, defer_dense=True)
        indexer.index_paths(paths)
        by_url = {k: str(r["doc_id"]) for r in engine.store.iter_documents(["doc_id", "url"])
                  if (k := _url_key(r.get("url"))) is not None}
        items = _map_gold([i for g in gold for i in load_gold(g)], by_url)
        total = engine.store.count_chunks()
        corpus = Corpus("archive", [], items, engine=engine)
        rows: list[list[Any]] = []
        rep.data["results"] = {}

        def measure(label: str, lexical_only: bool = False) -> None:
            for lang in ("ar", "en"):
                for split in ("dev", "test", None):
                    group = [i for i in items if i.lang == lang and (split is None or i.split == split)]
                    h = _hits(ranked(corpus, group, lexical_only), group)
                    rep.data["results"][f"{label} {lang} {split or 'all'}"] = h
                    rows.append([label, lang, split or "all", h["n"], h["hit@1"], h["hit@10"]])
            rep.data["chunks"] = total
            rep.table("hit@1 / hit@10 (distinct articles of the top 40 passages)",
                      ["ranking", "lang", "split", "answerable", "hit@1", "hit@10"], rows)
            rep.sections = rep.sections[-1:]  # one table, rewritten with every stop
            rep.write()

        measure("all lexical", lexical_only=True)
        for share in stops:
            target = round((1 - share) * total)
            enough = threading.Event()

            def check(_: int, target: int = target, enough: threading.Event = enough) -> None:
                if engine.store.count_dense_pending() <= target:
                    enough.set()

            t0 = time.perf_counter()
            if engine.store.count_dense_pending() > target:
                indexer.fill_dense(batch=32, on_batch=check, stop=enough)
            rep.data.setdefault("fill_seconds", {})[str(share)] = round(time.perf_counter() - t0, 1)
            filled = 1 - engine.store.count_dense_pending() / total
            measure(f"mixed, {filled:.0%} filled (newest first)" if filled < 1 else "all hybrid")
    finally:
        engine.close()
    return rep.data
