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

``--fit`` chooses the offset and slope on the dev items only, one pair per question script (grid search; the
ranking is simulated in numpy from the store's own lexical scores and the cosines, candidates as the Query API's
prefetch takes them), and the table reports dev and test items apart, test never fitted on. With
``--archive-index`` (a ``sanad bench mixed-archive`` data dir) the 17-day archive joins the dev and test groups:
as it stands, or, once every vector is in, at 25/50/75% filled newest first as the service fills it.
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
    corpus.engine.retriever.forget_waiting()


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
    matrix = np.stack([corpus.vectors[pid] for pid in ids])
    return ids, _ask(engine, ids, matrix, items, candidates)


def _ask(engine: Sanad, ids: list[str], matrix: np.ndarray, items: list[GoldItem], candidates: int) -> list[_Query]:
    """Each question's cosine with every chunk (rows of ``matrix``, in the order of ``ids``) and its lexical
    prefetch from the store."""
    where = {pid: n for n, pid in enumerate(ids)}
    out = []
    for item in items:
        qv = engine.retriever.query_vector(item.question)
        cos = matrix @ np.asarray(qv, dtype=np.float32) if qv is not None else np.zeros(len(ids), np.float32)
        sparse = engine.encoder.query(item.question)
        pts = engine.store.search(sparse, None, limit=candidates, candidates=candidates, query_filter=None) \
            if sparse.indices else []
        out.append(_Query(item, cos, np.array([where[str(p.id)] for p in pts], dtype=int),
                          np.array([float(p.score) for p in pts], dtype=np.float32)))
    return out


def _simulate(docs: list[str], queries: list[_Query], filled: np.ndarray, offset: float,
              slope: float, weight: float, saturation: float, candidates: int, form: str = "fixed") -> list[list[str]]:
    """The Query API formula in numpy. ``form`` is the waiting chunk's estimated cosine: ``fixed`` (shipped)
    ``offset + slope * sq``; two scale-aware alternatives measured against it: ``floor``, relative to the
    question's lowest cosine among its dense candidates (which rises with the archive's size), and
    ``calibrated``, a line ``cos ~ sq`` fitted per question on the lexical candidates that have their vector,
    moved by ``offset`` (``slope`` unused); ``scaled``, ``offset - slope * max(0, log10(waiting chunks / P))
    + 0.2 * sq`` (lower the more chunks wait beyond P, a thousand or as the form's name says: ``slope`` is that
    rate per tenfold, the lexical slope is the shipped 0.2; as ``RetrievalSettings`` computes it)."""
    out = []
    for q in queries:
        cos = np.where(filled, q.cos, -np.inf)
        k = min(candidates, int(filled.sum()))
        dense_idx = np.argpartition(-cos, k - 1)[:k] if k else np.array([], dtype=int)
        score: dict[int, float] = {int(i): float(q.cos[i]) for i in dense_idx}
        sq = q.lex_raw / (q.lex_raw + saturation)
        a, b = offset, slope
        if form == "floor":
            a = (float(cos[dense_idx].min()) if k else 0.0) + offset
        elif form.startswith("scaled"):
            pivot = SCALED_FROM[form]
            a, b = offset - slope * max(0.0, float(np.log10(max(int((~filled).sum()), 1) / pivot))), 0.2
        elif form == "calibrated":
            have = filled[q.lex_idx]
            if have.sum() >= 5:
                x, y = sq[have], q.cos[q.lex_idx][have]
                b = max(float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else 0.0, 0.0)
                a = float(y.mean() - b * x.mean()) + offset
            else:  # too few to fit: the shipped estimate
                a, b = 0.75, 0.2
        for i, s in zip(q.lex_idx, sq, strict=True):
            extra = weight * s + (0.0 if filled[i] else a + b * s)
            score[int(i)] = score.get(int(i), 0.0) + extra
        order = sorted(score, key=lambda i: -score[i])[: TOP * 4]
        out.append(distinct_docs([docs[i] for i in order]))
    return out


@dataclass
class _Group:
    """Questions of one language over one index, with the fill states (name, which chunks filled) to simulate."""
    name: str
    lang: str
    docs: list[str]  # each chunk's article, in the order of the queries' cosines
    queries: list[_Query]
    masks: list[tuple[str, np.ndarray]]


def _groups(corpora: list[Corpus], split: str, seed: int, cand: int) -> list[_Group]:
    groups = []
    for c in corpora:
        items = [i for i in c.items if i.split == split and i.answerable]
        ids, qs = _queries(c, items, cand)
        docs = [str((c.points[pid].payload or {})["doc_id"]) for pid in ids]
        masks = []
        for share in FRACTIONS:
            chosen = set(random.Random(seed).sample(ids, round(share * len(ids))))
            masks.append((f"{round(share * 100)}%", np.array([pid in chosen for pid in ids])))
        for lang in sorted({i.lang for i in items}):
            groups.append(_Group(c.name, lang, docs, [q for q in qs if q.item.lang == lang], masks))
    return groups


def archive_groups(folder: Path, gold: list[Path], split: str, cand: int) -> list[_Group]:
    """An archive index as it stands (``sanad bench mixed-archive``'s data dir, part filled newest first)."""
    settings = Settings(data_dir=folder)
    engine = Sanad.open(settings)
    try:
        by_url = {k: str(r["doc_id"]) for r in engine.store.iter_documents(["doc_id", "url"])
                  if (k := _url_key(r.get("url"))) is not None}
        items = [i for i in _map_gold([i for g in gold for i in load_gold(g)], by_url)
                 if i.split == split and i.answerable]
        ids: list[str] = []
        docs: list[str] = []
        dates: list[int] = []
        filled: list[bool] = []
        rows: list[np.ndarray | None] = []
        offset = None
        while True:
            pts, offset = engine.store.client.scroll(engine.store.chunks, limit=2048, offset=offset,
                                                     with_payload=["doc_id", "dense", "date_num"],
                                                     with_vectors=[DENSE])
            for p in pts:
                has = bool((p.payload or {}).get("dense"))
                ids.append(str(p.id))
                docs.append(str((p.payload or {})["doc_id"]))
                dates.append(int((p.payload or {}).get("date_num") or 0))
                filled.append(has)
                rows.append(np.asarray((p.vector or {})[DENSE], dtype=np.float32) if has  # type: ignore[index,call-overload]
                            else None)
            if offset is None:
                break
        zero = np.zeros(len(next(r for r in rows if r is not None)), np.float32)
        matrix = np.stack([zero if r is None else r for r in rows])  # a waiting chunk's cosine is never read
        qs = _ask(engine, ids, matrix, items, cand)
        mask = np.array(filled)
        masks = [(f"{mask.mean():.0%} (as filled)", mask)]
        if mask.all():  # every vector known: the fill's states simulated, newest articles first as the service fills
            order = sorted(range(len(ids)), key=lambda n: (-dates[n], ids[n]))
            masks = []
            for share in FRACTIONS:
                m = np.zeros(len(ids), dtype=bool)
                m[order[: round(share * len(ids))]] = True
                masks.append((f"{round(share * 100)}% newest", m))
        return [_Group("archive", lang, docs, [q for q in qs if q.item.lang == lang], masks)
                for lang in sorted({i.lang for i in items})]
    finally:
        engine.close()


GRIDS = {  # the estimate's forms (see _simulate) and the (offset, slope) grid each is fitted over
    "fixed": (np.arange(0.5, 0.951, 0.025), np.arange(0.0, 0.61, 0.05)),
    "floor": (np.arange(-0.25, 0.151, 0.025), np.arange(0.0, 0.61, 0.1)),
    "calibrated": (np.arange(-0.1, 0.151, 0.025), np.array([0.0])),
    "scaled": (np.arange(0.6, 0.851, 0.025), np.arange(0.0, 0.201, 0.025)),
    "scaled from 3,000": (np.arange(0.6, 0.851, 0.025), np.arange(0.0, 0.301, 0.025)),
    "scaled from 10,000": (np.arange(0.6, 0.851, 0.025), np.arange(0.0, 0.401, 0.025)),
}
# Waiting chunks beyond which each "scaled" form lowers the estimate (RetrievalSettings.pending_scale_from).
SCALED_FROM = {"scaled": 1000, "scaled from 3,000": 3000, "scaled from 10,000": 10000}


Params = dict[str, tuple[float, float]]  # question language -> (offset, slope)


def _objective(groups: list[_Group], form: str, params: Params, weight: float, saturation: float,
               cand: int) -> tuple[float, dict[str, dict[str, Any]]]:
    """Mean (hit@1 + hit@10) / 2 over the groups, each group ranked with its question language's parameters."""
    per = {}
    for g in groups:
        offset, slope = params[g.lang]
        for label, mask in g.masks:
            h = _hits(_simulate(g.docs, g.queries, mask, offset, slope, weight, saturation, cand, form),
                      [q.item for q in g.queries])
            per[f"{g.name} {g.lang} {label}"] = h
    return float(np.mean([(h["hit@1"] + h["hit@10"]) / 2 for h in per.values()])), per


def fit(groups: list[_Group], r: Any, form: str = "fixed") -> tuple[float, float, list[dict[str, Any]]]:
    """Offset and slope maximising mean (hit@1 + hit@10) / 2 over the dev groups (each set, language and
    fill state weighted equally)."""
    cand = max(r.candidates, TOP * 4)
    offsets, slopes = GRIDS[form]
    grid = []
    for offset in offsets:
        for slope in slopes:
            both = (float(offset), float(slope))
            obj, _ = _objective(groups, form, {g.lang: both for g in groups}, r.lexical_weight,
                                r.lexical_saturation, cand)
            grid.append({"offset": round(float(offset), 3), "slope": round(float(slope), 3),
                         "objective": round(obj, 4)})
    best = max(grid, key=lambda g: (g["objective"], -g["slope"], -g["offset"]))
    return best["offset"], best["slope"], grid


def fit_per_script(groups: list[_Group], r: Any, form: str = "fixed") -> Params:
    """One (offset, slope) per question language, each fitted on that language's dev groups: a lexical match is
    strong evidence for a question in the articles' script and weak for one in another (an English question
    over Arabic news matches only its transliterated names), and the waiting chunks it brings in crowd out
    the filled ones the more of them there are."""
    out = {}
    for lang in sorted({g.lang for g in groups}):
        offset, slope, _ = fit([g for g in groups if g.lang == lang], r, form)
        out[lang] = (offset, slope)
    return out


def compare_forms(dev: list[_Group], test: list[_Group], r: Any) -> dict[str, Any]:
    """Each form fitted on ``dev``, once for all questions and once per question language, then measured on
    ``test`` (never fitted on)."""
    cand = max(r.candidates, TOP * 4)
    langs = sorted({g.lang for g in dev + test})
    out = {}
    for form in GRIDS:
        offset, slope, _ = fit(dev, r, form)
        for name, params in ((form, {lang: (offset, slope) for lang in langs}),
                             (f"{form}, per script", fit_per_script(dev, r, form))):
            dev_obj, _ = _objective(dev, form, params, r.lexical_weight, r.lexical_saturation, cand)
            obj, per = _objective(test, form, params, r.lexical_weight, r.lexical_saturation, cand)
            out[name] = {"params": {k: list(v) for k, v in params.items()}, "dev_objective": round(dev_obj, 4),
                         "test_objective": round(obj, 4), "test": per}
    return out


def run(xquad: list[Path], archive: Path | None, day: str, gold: list[Path], out: Path, seed: int = 7,
        do_fit: bool = False, data_dir: Path | None = None, forms: bool = False,
        archive_index: Path | None = None) -> dict[str, Any]:
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
    # The runtime's estimate is the "scaled" form (see _simulate): per script, (offset, rate per tenfold of
    # waiting chunks beyond a thousand), the lexical slope 0.2.
    params: Params = {"ar": (rs.pending_offset, rs.pending_scale),
                      "en": (rs.pending_offset_cross, rs.pending_scale_cross)}
    scaled = next((f for f, p in SCALED_FROM.items() if p == rs.pending_scale_from), "scaled")
    cand = max(rs.candidates, TOP * 4)
    if do_fit or forms:
        dev, test = _groups(corpora, "dev", seed, cand), _groups(corpora, "test", seed, cand)
        if archive_index is not None:
            dev += archive_groups(archive_index, gold, "dev", cand)
            test += archive_groups(archive_index, gold, "test", cand)
    cmp = compare_forms(dev, test, rs) if forms else {}
    if do_fit:
        best = -1.0
        for form in SCALED_FROM:  # where the scale starts is chosen on dev too
            if (done := cmp.get(f"{form}, per script")) is not None:  # fitted already, for the forms' table
                fitted = {k: (v[0], v[1]) for k, v in done["params"].items()}
                obj = done["dev_objective"]
            else:
                fitted = fit_per_script(dev, rs, form)
                obj, _ = _objective(dev, form, fitted, rs.lexical_weight, rs.lexical_saturation, cand)
            if obj > best:
                best, scaled, params = obj, form, fitted
        rep.data["fit"] = {"params": {k: list(v) for k, v in params.items()}, "form": scaled,
                           "scale_from": SCALED_FROM[scaled], "dev_objective": round(best, 4), "seed": seed}
        rep.note("Fitted on dev items, per question script: "
                 f"pending_offset = {params['ar'][0]}, pending_scale = {params['ar'][1]} (Arabic); "
                 f"pending_offset_cross = {params['en'][0]}, pending_scale_cross = {params['en'][1]} (English); "
                 f"pending_scale_from = {SCALED_FROM[scaled]}; lexical slopes 0.2")
    if forms:
        rep.data["forms"] = cmp
        groups = list(next(iter(cmp.values()))["test"])
        rep.table("The waiting chunk's estimate: each form fitted on dev, test hit@1 / hit@10 (never fitted on)",
                  ["form", "ar (offset, slope)", "en (offset, slope)", "dev objective", "test objective", *groups],
                  [[f, "{:.3f}, {:.3f}".format(*c["params"]["ar"]), "{:.3f}, {:.3f}".format(*c["params"]["en"]),
                    c["dev_objective"], c["test_objective"],
                    *(f'{c["test"][g]["hit@1"]:.3f} / {c["test"][g]["hit@10"]:.3f}' for g in groups)]
                   for f, c in cmp.items()])
    if (do_fit or forms) and archive_index is not None:
        _archive_table(rep, dev + test, params, rs, cand, scaled)
    chosen = rs.model_copy(update={"pending_offset": params["ar"][0], "pending_scale": params["ar"][1],
                                   "pending_offset_cross": params["en"][0], "pending_scale_cross": params["en"][1],
                                   "pending_slope": 0.2, "pending_slope_cross": 0.2,
                                   "pending_scale_from": SCALED_FROM[scaled]})
    uncalibrated = rs.model_copy(update={"pending_offset": 0.0, "pending_slope": 0.0, "pending_scale": 0.0,
                                         "pending_offset_cross": 0.0, "pending_slope_cross": 0.0,
                                         "pending_scale_cross": 0.0})
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
                    for label, r in (("mixed", chosen), ("uncalibrated", uncalibrated)):
                        eng.retriever.settings = r
                        res[f"{label} {round(share * 100)}%"] = _hits(ranked(c, items), items)
                    eng.retriever.settings = chosen
                data[key] = res
                for label, h in res.items():
                    rows.append([key, label, h["n"], h["hit@1"], h["hit@10"]])
        set_filled(c, 1.0, seed)
        eng.close()
    rep.data["results"] = data
    rep.data["pending"] = {k: list(v) for k, v in params.items()}
    rep.table(f"hit@1 / hit@10 (distinct articles of the top {TOP} passages); share of chunks filled, seed {seed}",
              ["set", "ranking", "answerable", "hit@1", "hit@10"], rows)
    rep.write()
    return rep.data


def _archive_table(rep: Report, groups: list[_Group], params: Params, r: Any, cand: int, scaled: str) -> None:
    """The archive's fill states ranked with the estimate before per-script scaling and with ``params``, and the
    share of questions whose article is filled at all (the most an English question can find)."""
    rows = []
    for g in (g for g in groups if g.name == "archive"):
        items = [q.item for q in g.queries]
        for label, mask in g.masks:
            filled_docs = {d for d, f in zip(g.docs, mask, strict=True) if f}
            reach = np.mean([any(s in filled_docs for s in i.sources) for i in items if i.answerable])
            cells = []
            for form, (a, b) in (("fixed", (0.75, 0.2)), (scaled, params[g.lang])):
                h = _hits(_simulate(g.docs, g.queries, mask, a, b, r.lexical_weight, r.lexical_saturation, cand,
                                    form), items)
                cells.append(f'{h["hit@1"]:.3f} / {h["hit@10"]:.3f}')
            rep.data.setdefault("archive", {})[f"{g.lang} {items[0].split} {label}"] = cells
            rows.append([g.lang, items[0].split, label, len(items), *cells, f"{reach:.3f}"])
    rep.table("The 17-day archive filled newest first, simulated from its vectors: hit@1 / hit@10",
              ["lang", "split", "filled", "answerable", "before (0.75 + 0.2 sq, any script)", "per script, scaled",
               "article filled"], rows)


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
