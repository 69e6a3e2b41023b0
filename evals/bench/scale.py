"""``sanad bench scale``: the embedded store at 1k/10k/100k chunks, through Sanad's own code.

Corpora come from ``store_scale.synth_texts`` (XQuAD-ar paragraphs + seeds, sentences
shuffled and mixed so no two chunks are equal); each text is one chunk-sized article.
Per (engine, size), in a fresh subprocess: ``Sanad.open`` on a temporary data dir, index
with ``Indexer.index_articles`` (chunking, lexical encoding, upsert, document records) and
``store.optimize()``, then ``engine.search`` latency (XQuAD-ar questions, top_k 5, several
passes), disk size, peak RSS. Where the full Indexer path would take too long (``--bulk-from``
size and up), the corpus is encoded in parallel processes (cached) and upserted through
``PassageStore.upsert_chunks``: encoding and store time are then reported separately.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from evals.bench import store_scale
from evals.bench.common import Report, du_mb, median, pct, plot_latency_vs_size, rss_mb

CACHE = Path(tempfile.gettempdir()) / "sanad_bench_cache"
BULK_FROM = 100_000
LOCAL_MAX_QUERIES = 20


def _open(engine: str, data_dir: Path) -> Any:
    from rag.engine import Sanad
    from rag.settings import QdrantSettings, Settings

    qdrant = QdrantSettings.model_validate({"engine": engine, "collection": "bench"})
    return Sanad.open(Settings(data_dir=data_dir, qdrant=qdrant))


def _index_indexer(sanad: Any, size: int) -> dict[str, Any]:
    from index.ingest import Indexer
    from rag.models import Article

    texts = store_scale.synth_texts(size)
    articles = [
        Article(id=f"doc{j:06d}", title=f"مقال {j}", text=t, date=date(2020, 1 + j % 12, 1 + j % 28), source="bench")
        for j, t in enumerate(texts)
    ]
    indexer = Indexer(sanad.store, sanad.encoder, sanad.embedder, sanad.settings.index)
    t = time.perf_counter()
    summary = indexer.index_articles(articles)
    t_index = time.perf_counter() - t
    t = time.perf_counter()
    sanad.store.optimize()
    t_opt = time.perf_counter() - t
    return {"path": "Indexer", "chunks": summary.chunks, "index_s": t_index, "optimize_s": t_opt}


def _index_bulk(sanad: Any, size: int) -> dict[str, Any]:
    from qdrant_client import models

    from rag.store import LEXICAL

    t = time.perf_counter()
    cached = (CACHE / f"corpus_{size}.pkl").exists()
    corpus, _rate = store_scale.corpus_file(size, CACHE)
    t_encode = None if cached else time.perf_counter() - t
    t = time.perf_counter()
    n = 0
    for batch in store_scale.iter_batches(corpus):
        sanad.store.upsert_chunks(
            [
                models.PointStruct(
                    id=b["id"],
                    vector={LEXICAL: models.SparseVector(indices=b["indices"], values=b["values"])},
                    payload=b["payload"],
                )
                for b in batch
            ]
        )
        n += len(batch)
    t_index = time.perf_counter() - t
    t = time.perf_counter()
    sanad.store.optimize()
    return {
        "path": "bulk upsert of pre-encoded chunks",
        "chunks": n,
        "index_s": t_index,
        "optimize_s": time.perf_counter() - t,
        "encode_s": t_encode,
        "encode_cached": cached,
    }


def worker(engine: str, size: int, n_queries: int, repeats: int) -> dict[str, Any]:
    """One (engine, size) measurement; run in its own process so peak RSS is its own."""
    rss0 = rss_mb()
    data_dir = Path(tempfile.mkdtemp(prefix=f"sanad-scale-{engine}-{size}-"))
    try:
        sanad = _open(engine, data_dir)
        r = _index_bulk(sanad, size) if size >= BULK_FROM else _index_indexer(sanad, size)
        r["chunks_per_s"] = r["chunks"] / (r["index_s"] + r["optimize_s"])
        rss_indexed = rss_mb()
        qs = store_scale.queries(n_queries)
        sanad.search(qs[0])
        p50s, p95s, cpu50s = [], [], []
        for _ in range(repeats):
            lat, cpu = [], []
            for q in qs:
                t, c = time.perf_counter(), time.process_time()
                sanad.search(q)
                lat.append((time.perf_counter() - t) * 1000)
                cpu.append((time.process_time() - c) * 1000)
            p50s.append(pct(lat, 0.5))
            p95s.append(pct(lat, 0.95))
            cpu50s.append(pct(cpu, 0.5))
        sanad.close()
        r.update(
            engine=engine,
            size=size,
            queries=len(qs),
            passes=repeats,
            p50_ms=median(p50s),
            p95_ms=median(p95s),
            cpu_p50_ms=median(cpu50s),
            disk_mb=du_mb(data_dir),
            rss_base_mb=rss0,
            rss_indexed_mb=rss_indexed,
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )
        return r
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)




def run(out: Path, sizes: list[int], local_sizes: list[int], n_queries: int = 100, repeats: int = 3) -> dict[str, Any]:
    rep = Report("scale", "Embedded store at scale: indexing, disk, memory, engine.search latency", out)
    plan = [("edge", s) for s in sizes] + [("local", s) for s in local_sizes]
    runs: list[dict[str, Any]] = []
    for eng, size in plan:
        nq, passes = (n_queries, repeats) if eng == "edge" else (min(n_queries, LOCAL_MAX_QUERIES), 1)
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "evals.bench.scale", eng, str(size), str(nq), str(passes)],
            capture_output=True,
            text=True,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
        if proc.returncode:
            rep.note(f"{eng} {size}: FAILED\n{proc.stderr[-1500:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["wall_s"] = time.perf_counter() - t
        runs.append(r)
        rep.note(
            f"{eng:5} {size:>7}: {r['chunks_per_s']:.0f} chunks/s, p50 {r['p50_ms']:.2f} ms, "
            f"p95 {r['p95_ms']:.2f} ms ({r['wall_s']:.0f} s)"
        )
    rep.data["runs"] = runs
    cols = ["chunks_per_s", "index_s", "optimize_s", "disk_mb", "peak_rss_mb", "p50_ms", "p95_ms", "cpu_p50_ms"]
    rep.table(
        "Sanad on the embedded store (engine.search, top_k 5)",
        ["engine", "size", "path", *cols],
        [[r["engine"], r["size"], r["path"], *(r[c] for c in cols)] for r in runs],
        digits=2,
    )
    big = [r for r in runs if r["engine"] == "edge" and r["size"] >= BULK_FROM]
    small = [r for r in runs if r["engine"] == "edge" and r["path"] == "Indexer"]
    if big and small:
        b, s = big[-1], max(small, key=lambda r: r["size"])
        enc = (
            f"parallel encoding took {b['encode_s']:.0f} s"
            if b.get("encode_s")
            else "encoding came from the cache (store_scale.corpus_file)"
        )
        rep.note(
            f"{b['size']} chunks: loaded as pre-encoded chunks ({enc}); the store itself took "
            f"{b['index_s']:.0f} s + optimize {b['optimize_s']:.0f} s. Through the full Indexer, edge at "
            f"{s['size']} chunks ran {s['chunks_per_s']:.0f} chunks/s, so {b['size']} chunks would take about "
            f"{b['size'] / s['chunks_per_s'] / 60:.0f} min on one core: chunking and lexical encoding dominate, "
            "not the store."
        )
    if big:
        p95 = big[-1]["p95_ms"]
        verdict = "met" if p95 < 150 else "missed"
        rep.note(f"Target query p95 < 150 ms at 100k chunks: {p95:.1f} ms, {verdict} ({150 / p95:.0f}x margin).")
    png = plot_latency_vs_size(runs, out)
    if png:
        rep.note(f"plot: {png}")
    rep.write()
    return rep.data


if __name__ == "__main__":
    eng_, size_, nq_, rep_ = sys.argv[1:5]
    print(json.dumps(worker(eng_, int(size_), int(nq_), int(rep_))))
