"""``sanad bench archive``: a real news archive on one machine, indexed the way ``sanad index`` does it.

In one run, on a fresh data folder with the default settings (embedded qdrant-edge, the bundled
encoder): the lexical pass (time to searchable), disk and peak memory, the gold questions
answered at full size (hit@k, fact recall, refusals, answer p50/p95), bm25s over the same
articles (index time, query time, hit@k), whether a recency preference would help, and the
dense pass, either whole (``--dense all``) or timed on a sample of chunks and projected
(``--dense sample``), after which the questions are asked again with hybrid retrieval.

Gold sources are ``snn-<sha1(url)[:16]>``; they are matched to the indexed articles by URL, so the
id scheme of the reader does not matter.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from evals.bench.common import Report, du_mb, pct, rss_mb
from evals.bench.retrieval import Bm25Baseline, words
from evals.gold import GoldItem, load_gold
from evals.metrics import summarize_by_language
from evals.runner import InProcessTarget, distinct_docs, run_items
from index.ingest import Indexer
from index.readers import Skipped, iter_files, read_path
from rag.engine import Sanad
from rag.settings import Settings

RECENCY_WEIGHTS = (0.0, 0.02, 0.05, 0.1)


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _url_key(url: str | None) -> str | None:
    return hashlib.sha1(url.encode("utf-8")).hexdigest()[:16] if url else None


def _map_gold(items: list[GoldItem], by_url: dict[str, str]) -> list[GoldItem]:
    """Items with their sources renamed to the indexed ids; an answerable item none of whose sources is in
    the archive (a gold file over more days than were indexed) is left out."""
    out = []
    for item in items:
        sources = [by_url[key] for s in item.sources if (key := s.removeprefix("snn-")) in by_url]
        if item.answerable and not sources:
            continue
        out.append(item.model_copy(update={"sources": sources}))
    return out


def _hits(ranked: list[list[str]], items: list[GoldItem]) -> dict[str, float]:
    answerable = [(r, i) for r, i in zip(ranked, items, strict=True) if i.answerable]
    out = {}
    for k in (1, 5, 10):
        out[f"hit@{k}"] = sum(any(d in i.sources for d in r[:k]) for r, i in answerable) / max(len(answerable), 1)
    return out


def _recency(engine: Sanad, items: list[GoldItem], weight: float, span: tuple[int, int]) -> list[list[str]]:
    """Ranked docs when a passage's score gets ``weight`` x (how recent its article is, 0..1)."""
    lo, hi = span
    ranked = []
    for item in items:
        passages = engine.search(item.question, top_k=40)
        def boost(p: Any) -> float:
            day = int((p.date or "0").replace("-", "")[:8] or 0)
            return p.score * (1 + weight * ((day - lo) / (hi - lo) if hi > lo and day else 0.0))
        ranked.append(distinct_docs([p.doc_id for p in sorted(passages, key=boost, reverse=True)]))
    return ranked


def _ask_all(engine: Sanad, items: list[GoldItem]) -> tuple[dict[str, Any], list[float]]:
    results = run_items(InProcessTarget(engine), items)
    return summarize_by_language(results), [r.latency_ms for r in results]


def run(paths: list[Path], gold: list[Path], out: Path, dense: str = "sample", sample: int = 400,
        data_dir: Path | None = None, keep: bool = False) -> dict[str, Any]:
    files = list(iter_files(paths))
    rep = Report("archive", f"A news archive on one machine ({len(files)} files)", out)
    folder = data_dir or Path(tempfile.mkdtemp(prefix="sanad-archive-"))
    settings = Settings(data_dir=folder)
    settings.embed.threads = max(1, min(os.cpu_count() or 1, 8))  # as `sanad index` runs it
    data: dict[str, Any] = {"files": [str(f) for f in files], "data_dir": str(folder), "dense_mode": dense}
    engine = Sanad.open(settings)
    try:
        indexer = Indexer(engine.store, engine.encoder, engine.embedder, settings.index, defer_dense=True)
        t0 = time.perf_counter()
        summary = indexer.index_paths(paths, files=files)
        searchable = time.perf_counter() - t0
        chunks = engine.store.count_chunks()
        reasons: dict[str, int] = {}
        for s in summary.skipped:
            reasons[s.reason] = reasons.get(s.reason, 0) + 1
        data["lexical_pass"] = {
            "documents": summary.documents, "added": summary.added, "chunks": chunks, "skipped": reasons,
            "seconds_to_searchable": round(searchable, 1), "disk_mb": round(du_mb(folder), 1),
            "rss_mb": round(rss_mb(), 1), "peak_rss_mb": _peak_rss_mb(),
            "stories_with_copies": len(indexer.stories.members()),
        }
        rep.table("Lexical pass (searchable)", ["documents", "chunks", "seconds", "disk MB", "peak RSS MB"],
                  [[summary.documents, chunks, searchable, data["lexical_pass"]["disk_mb"],
                    data["lexical_pass"]["peak_rss_mb"]]], digits=1)

        # Gold questions over the archive, matched to the indexed articles by URL.
        # One read of the archive for what the gold mapping, bm25s and the recency span need.
        by_url: dict[str, str] = {}
        dates: list[int] = []
        docs: list[tuple[str, str]] = []
        fields = settings.index.field_map
        for f in files:
            for a in read_path(f, settings.index.max_file_bytes, fields):
                if isinstance(a, Skipped):
                    continue
                docs.append((a.id, f"{a.title}\n{a.text}"))
                if (key := _url_key(a.url)) is not None:
                    by_url[key] = a.id
                if a.date:
                    dates.append(int(a.date.strftime("%Y%m%d")))
        items = _map_gold([i for g in gold for i in load_gold(g)], by_url)
        data["questions"] = len(items)

        # A fresh folder has no dense vectors yet: every chunk is ranked by its lexical score (the mixed ranking
        # with nothing filled is the lexical order). A --data-dir whose dense pass is done (an earlier run, or
        # `sanad index` run to the end) is hybrid already, and the figures below are labelled so.
        mode = "hybrid" if engine.store.count_dense_pending() == 0 else "lexical"
        data["search_mode"] = mode
        first, lat = _ask_all(engine, items)
        data[f"{mode}_answers"] = first
        data[f"{mode}_latency_ms"] = {"p50": round(pct(lat, 0.5), 1), "p95": round(pct(lat, 0.95), 1)}

        # bm25s over the same articles (words, lowercased), for speed and retrieval.
        t0 = time.perf_counter()
        bm25 = Bm25Baseline(docs, words)
        bm25_index = time.perf_counter() - t0
        bm_lat, bm_ranked = [], []
        for item in items:
            t1 = time.perf_counter()
            bm_ranked.append(bm25(item.question))
            bm_lat.append((time.perf_counter() - t1) * 1000)
        sanad_ranked, s_lat = [], []
        for item in items:
            t1 = time.perf_counter()
            sanad_ranked.append(distinct_docs([p.doc_id for p in engine.search(item.question, top_k=40)]))
            s_lat.append((time.perf_counter() - t1) * 1000)
        data["bm25s"] = {"index_seconds": round(bm25_index, 1), **_hits(bm_ranked, items),
                         "query_p50_ms": round(pct(bm_lat, 0.5), 2), "query_p95_ms": round(pct(bm_lat, 0.95), 2)}
        data[f"sanad_{mode}_search"] = {"seconds_to_searchable": round(searchable, 1), **_hits(sanad_ranked, items),
                                        "query_p50_ms": round(pct(s_lat, 0.5), 2),
                                        "query_p95_ms": round(pct(s_lat, 0.95), 2)}
        rep.table("Retrieval over the archive (distinct articles)", ["", "index s", "hit@1", "hit@5", "hit@10",
                                                                     "p50 ms", "p95 ms"],
                  [[f"Sanad, {mode}", searchable, *(data[f"sanad_{mode}_search"][f"hit@{k}"] for k in (1, 5, 10)),
                    data[f"sanad_{mode}_search"]["query_p50_ms"], data[f"sanad_{mode}_search"]["query_p95_ms"]],
                   ["bm25s, \\w+ tokens", bm25_index, *(data["bm25s"][f"hit@{k}"] for k in (1, 5, 10)),
                    data["bm25s"]["query_p50_ms"], data["bm25s"]["query_p95_ms"]]])

        span = (min(dates), max(dates)) if dates else (0, 0)
        data["recency"] = {str(w): _hits(_recency(engine, items, w, span), items) for w in RECENCY_WEIGHTS}
        rep.table(f"Recency preference (score x (1 + w x recency)), {mode}", ["w", "hit@1", "hit@5", "hit@10"],
                  [[w, *(data["recency"][str(w)][f"hit@{k}"] for k in (1, 5, 10))] for w in RECENCY_WEIGHTS])

        # The dense pass: all of it, or a timed sample projected to the whole archive.
        pending = engine.store.count_dense_pending()
        t0 = time.perf_counter()
        if dense == "all":
            filled = indexer.fill_dense(batch=16)
        elif dense == "sample":
            enough, counted = threading.Event(), [0]

            def count(n: int) -> None:
                counted[0] += n
                if counted[0] >= min(sample, pending):
                    enough.set()  # fill_dense stops after this batch

            filled = indexer.fill_dense(batch=16, on_batch=count, stop=enough)
        else:
            filled = 0
        seconds = time.perf_counter() - t0
        rate = filled / seconds if seconds and filled else None
        data["dense_pass"] = {"chunks": pending, "filled": filled, "seconds": round(seconds, 1),
                              "chunks_per_second": round(rate, 2) if rate else None,
                              "projected_hours_for_all": round(pending / rate / 3600, 2) if rate else None,
                              "peak_rss_mb": _peak_rss_mb(),
                              "disk_mb": round(du_mb(folder), 1)}
        rep.table("Dense pass", ["chunks", "filled", "seconds", "chunks/s", "projected h (all)"],
                  [[pending, filled, seconds, rate, data["dense_pass"]["projected_hours_for_all"]]], digits=2)
        if mode == "lexical" and engine.store.count_dense_pending() == 0:
            hybrid, hlat = _ask_all(engine, items)
            data["hybrid_answers"] = hybrid
            data["hybrid_latency_ms"] = {"p50": round(pct(hlat, 0.5), 1), "p95": round(pct(hlat, 0.95), 1)}
        rows = []
        for name in ("lexical_answers", "hybrid_answers"):
            for lang, s in (data.get(name) or {}).items():
                rows.append([f"{name.split('_')[0]} {lang}", s["items"], s["hit@1"], s["hit@10"], s["fact_recall"],
                             s["refusal_rate"], s["false_refusal_rate"], s["latency_p50_ms"], s["latency_p95_ms"]])
        rep.table("Gold questions answered at full size", ["", "items", "hit@1", "hit@10", "fact recall",
                                                           "refused (unans.)", "false refusals", "p50 ms", "p95 ms"],
                  rows)
    finally:
        engine.close()
        if not keep and data_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    rep.data.update(data)
    rep.write()
    return data

