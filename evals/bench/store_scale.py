"""Passage-store scale benchmark: qdrant-client local mode vs qdrant-edge.

Builds synthetic Arabic corpora (XQuAD-ar paragraphs + seeds, sentences shuffled
and mixed across paragraphs so no two chunks are duplicates), encodes them with
Sanad's ``LexicalEncoder`` and, per (backend, size), in a fresh subprocess:
upserts them (sparse ``lexical`` vector, ``Modifier.IDF``, Sanad-like payload),
then measures query latency (50 XQuAD-ar questions), a filtered query, the
close/reopen time, disk size and peak RSS. Top-10 ids per query are stored so
backends can be compared for agreement.

    python evals/bench/store_scale.py --sizes 1000 10000 100000 --backend local edge --out /tmp/bench

Encoded corpora are cached under ``--cache`` (default /tmp/sanad_bench_cache).
Needs ``qdrant-edge-py`` for ``edge`` and ``matplotlib`` for the plot (bench extras).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

XQUAD = Path("/work/shared/datasets/xquad/xquad.ar.json")
SEEDS = ROOT / "seeds"
NS = uuid.UUID("5a3ad000-0000-4000-8000-00000000be9c")
BATCH = 256
_SENT = re.compile(r"(?<=[.!؟?])\s+")


# -- corpus ------------------------------------------------------------------
def _paragraphs() -> tuple[list[str], list[str]]:
    data = json.loads(XQUAD.read_text())["data"]
    paras = [p["context"].strip() for a in data for p in a["paragraphs"]]
    questions = [q["question"] for a in data for p in a["paragraphs"] for q in p["qas"]]
    for f in sorted(SEEDS.glob("*.txt")):
        if f.name.lower() == "readme.md":
            continue
        paras.extend(b.strip() for b in f.read_text().split("\n\n") if len(b.split()) > 15)
    return paras, questions


def queries(n: int = 50) -> list[str]:
    _, qs = _paragraphs()
    step = max(1, len(qs) // n)
    return qs[::step][:n]


def synth_texts(n: int, seed: int = 7) -> list[str]:
    """``n`` distinct chunk-sized texts: the originals first, then shuffles/mixes."""
    paras, _ = _paragraphs()
    sents = [[s for s in _SENT.split(p) if s.strip()] for p in paras]
    rng = random.Random(seed)
    out: list[str] = list(paras[:n])
    seen = set(out)
    while len(out) < n:
        base = list(rng.choice(sents))
        rng.shuffle(base)
        for _ in range(rng.randint(1, 3)):
            other = rng.choice(sents)
            base.insert(rng.randrange(len(base) + 1), rng.choice(other))
        words = " ".join(base).split()
        text = " ".join(words[: rng.randint(60, 130)])
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def _encode(texts: list[str]) -> list[tuple[list[int], list[float]]]:
    from rag.lexical import LexicalEncoder

    enc = LexicalEncoder()
    return [(v.indices, v.values) for v in (enc.document(t) for t in texts)]


def corpus_file(n: int, cache: Path) -> tuple[Path, float]:
    """Encoded corpus of ``n`` chunks as a stream of pickled batches; returns (file, encode chunks/s)."""
    cache.mkdir(parents=True, exist_ok=True)
    path, meta = cache / f"corpus_{n}.pkl", cache / f"corpus_{n}.json"
    if path.exists() and meta.exists():
        return path, json.loads(meta.read_text())["encode_per_s"]
    texts = synth_texts(n)
    t0 = time.perf_counter()
    from multiprocessing import Pool

    parts = [texts[i : i + 2000] for i in range(0, n, 2000)]
    with Pool(os.cpu_count() or 1) as pool:
        vecs = [v for part in pool.map(_encode, parts) for v in part]
    rate = n / (time.perf_counter() - t0) / (os.cpu_count() or 1)  # per core
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        for i in range(0, n, BATCH):
            batch = []
            for j in range(i, min(n, i + BATCH)):
                doc = j // 4  # ~4 chunks per article
                day = 20200101 + (doc % 28) + 100 * (doc % 12)
                batch.append(
                    {
                        "id": str(uuid.uuid5(NS, str(j))),
                        "indices": vecs[j][0],
                        "values": vecs[j][1],
                        "payload": {
                            "doc_id": f"doc{doc:06d}",
                            "title": f"مقال {doc}",
                            "chunk_index": j % 4,
                            "text": texts[j],
                            "start": 0,
                            "end": len(texts[j]),
                            "sentences": [[0, len(texts[j])]],
                            "date": f"{str(day)[:4]}-{str(day)[4:6]}-{str(day)[6:]}",
                            "date_num": day,
                            "source": "bench",
                            "url": None,
                        },
                    }
                )
            pickle.dump(batch, fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.rename(path)
    meta.write_text(json.dumps({"n": n, "encode_per_s": rate}))
    return path, rate


def iter_batches(path: Path):
    with path.open("rb") as fh:
        while True:
            try:
                yield pickle.load(fh)
            except EOFError:
                return


# -- backends ----------------------------------------------------------------
class LocalBackend:
    name = "local"
    memory = False

    def __init__(self, path: str) -> None:
        from qdrant_client import QdrantClient, models

        self.m = models
        self.path = path
        self.client = QdrantClient(location=":memory:") if self.memory else QdrantClient(path=path)
        if not self.client.collection_exists("bench"):
            self.client.create_collection(
                "bench",
                vectors_config={},
                sparse_vectors_config={"lexical": models.SparseVectorParams(modifier=models.Modifier.IDF)},
            )

    def upsert(self, batch: list[dict]) -> None:
        m = self.m
        self.client.upsert(
            "bench",
            [
                m.PointStruct(
                    id=b["id"],
                    vector={"lexical": m.SparseVector(indices=b["indices"], values=b["values"])},
                    payload=b["payload"],
                )
                for b in batch
            ],
            wait=True,
        )

    def finish(self) -> None:
        pass

    def filter(self, doc_ids: list[str], lo: int, hi: int):
        m = self.m
        return m.Filter(
            must=[
                m.FieldCondition(key="doc_id", match=m.MatchAny(any=doc_ids)),
                m.FieldCondition(key="date_num", range=m.Range(gte=lo, lte=hi)),
            ]
        )

    def query(self, indices: list[int], values: list[float], limit: int = 10, flt=None) -> list[tuple[str, float]]:
        res = self.client.query_points(
            "bench",
            query=self.m.SparseVector(indices=indices, values=values),
            using="lexical",
            limit=limit,
            query_filter=flt,
            with_payload=True,
        )
        return [(str(p.id), p.score) for p in res.points]

    def count(self) -> int:
        return self.client.count("bench", exact=True).count

    def close(self) -> None:
        self.client.close()


class LocalMemBackend(LocalBackend):
    """Local mode in ``:memory:``: same pure-Python query path, no per-point SQLite commit.

    Only to measure query latency at sizes where persistent local-mode indexing
    (one fsync'd SQLite commit per point) takes too long; not reopenable.
    """

    name = "local_mem"
    memory = True


class EdgeBackend:
    name = "edge"

    def __init__(self, path: str) -> None:
        import qdrant_edge as qe

        self.qe = qe
        self.path = path
        if any(Path(path).iterdir()):
            self.shard = qe.EdgeShard.load(path)
        else:
            self.shard = qe.EdgeShard.create(
                path, qe.EdgeConfig(sparse_vectors={"lexical": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)})
            )

    def upsert(self, batch: list[dict]) -> None:
        qe = self.qe
        self.shard.update(
            qe.UpdateOperation.upsert_points(
                [
                    qe.Point(b["id"], {"lexical": qe.SparseVector(b["indices"], b["values"])}, b["payload"])
                    for b in batch
                ]
            )
        )

    def finish(self) -> None:
        self.shard.flush()

    def filter(self, doc_ids: list[str], lo: int, hi: int):
        qe = self.qe
        return qe.Filter(
            must=[
                qe.FieldCondition("doc_id", match=qe.MatchAny(doc_ids)),
                qe.FieldCondition("date_num", range=qe.RangeFloat(gte=lo, lte=hi)),
            ]
        )

    def query(self, indices: list[int], values: list[float], limit: int = 10, flt=None) -> list[tuple[str, float]]:
        qe = self.qe
        res = self.shard.query(
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(qe.SparseVector(indices, values), using="lexical"),
                filter=flt,
                with_payload=True,
            )
        )
        return [(str(p.id), p.score) for p in res]

    def count(self) -> int:
        return self.shard.count(self.qe.CountRequest())

    def close(self) -> None:
        self.shard.close()


class EdgeOptBackend(EdgeBackend):
    """qdrant-edge with payload indexes on ``doc_id``/``date_num`` and ``optimize()`` after indexing."""

    name = "edge_opt"

    def __init__(self, path: str) -> None:
        fresh = not any(Path(path).iterdir())
        super().__init__(path)
        if fresh:
            qe = self.qe
            self.shard.update(qe.UpdateOperation.create_field_index("doc_id", qe.PayloadSchemaType.Keyword))
            self.shard.update(qe.UpdateOperation.create_field_index("date_num", qe.PayloadSchemaType.Integer))

    def finish(self) -> None:
        t = time.perf_counter()
        self.shard.optimize()
        self.optimize_s = time.perf_counter() - t
        self.shard.flush()


BACKENDS = {"local": LocalBackend, "local_mem": LocalMemBackend, "edge": EdgeBackend, "edge_opt": EdgeOptBackend}


def _du(path: str) -> tuple[int, int]:
    """(allocated bytes, apparent bytes): qdrant-edge preallocates sparse WAL/mmap files."""
    files = [f.stat() for f in Path(path).rglob("*") if f.is_file()]
    return sum(st.st_blocks * 512 for st in files), sum(st.st_size for st in files)


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def worker(backend: str, size: int, corpus: Path, n_queries: int, workdir: str) -> dict:
    from rag.lexical import LexicalEncoder

    enc = LexicalEncoder()
    qs = queries(n_queries)
    qvecs = [(v.indices, v.values) for v in (enc.query(q) for q in qs)]
    rss0 = _rss_mb()
    path = tempfile.mkdtemp(prefix=f"{backend}_{size}_", dir=workdir)
    b: Any = BACKENDS[backend](path)
    t0 = time.perf_counter()
    n = 0
    for batch in iter_batches(corpus):
        b.upsert(batch)
        n += len(batch)
    b.finish()
    t_index = time.perf_counter() - t0
    optimize_s = getattr(b, "optimize_s", None)
    assert b.count() == size, (b.count(), size)
    rss_indexed = _rss_mb()

    def run(flt_fn=None):
        b.query(*qvecs[0])  # warm-up
        lat, cpu, tops = [], [], []
        for i, (ind, val) in enumerate(qvecs):
            flt = flt_fn(i) if flt_fn else None
            t, c = time.perf_counter(), time.process_time()
            top = b.query(ind, val, 10, flt)
            lat.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
            tops.append(top)
        return lat, cpu, tops

    load0 = os.getloadavg()[0]
    lat, cpu, tops = run()
    ndocs = max(1, size // 4)
    flat, _, ftops = run(
        lambda i: b.filter([f"doc{(i * 37 + k * 101) % ndocs:06d}" for k in range(20)], 20200101, 20201231)
    )
    b.close()
    t1 = time.perf_counter()
    b = BACKENDS[backend](path)
    b.query(*qvecs[0])
    t_reopen = time.perf_counter() - t1
    tops2 = [b.query(ind, val, 10) for ind, val in qvecs[:10]]
    b.close()
    disk = _du(path)
    shutil.rmtree(path, ignore_errors=True)
    return {
        "backend": backend,
        "size": size,
        "queries": len(qvecs),
        "index_s": t_index,
        "optimize_s": optimize_s,
        "index_per_s": size / t_index,
        "disk_mb": disk[0] / 2**20,
        "disk_apparent_mb": disk[1] / 2**20,
        "rss_base_mb": rss0,
        "rss_indexed_mb": rss_indexed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loadavg_1m": load0,
        "cpu_p50_ms": _pct(cpu, 0.5),
        "cpu_p95_ms": _pct(cpu, 0.95),
        "p50_ms": _pct(lat, 0.5),
        "p95_ms": _pct(lat, 0.95),
        "mean_ms": statistics.fmean(lat),
        "filtered_p50_ms": _pct(flat, 0.5),
        "filtered_p95_ms": _pct(flat, 0.95),
        "reopen_first_query_s": t_reopen,
        "stable_after_reopen": [[i for i, _ in t] for t in tops2] == [[i for i, _ in t] for t in tops[:10]],
        "top10": tops,
        "filtered_top10": ftops,
    }


# -- comparison / output -------------------------------------------------------
def agreement(a: list[list], b: list[list]) -> dict:
    """Same top-10 id lists (allowing ties to swap), and max relative score difference."""
    same_set = same_order = 0
    max_rel = 0.0
    for ta, tb in zip(a, b, strict=False):
        ids_a, ids_b = [i for i, _ in ta], [i for i, _ in tb]
        # ties at the cut-off may pick different members: compare above the 10th score
        cut = min(ta[-1][1] if ta else 0, tb[-1][1] if tb else 0)
        above_a = {i for i, s in ta if s > cut * (1 + 1e-5)}
        above_b = {i for i, s in tb if s > cut * (1 + 1e-5)}
        same_set += above_a == above_b and len(ids_a) == len(ids_b)
        same_order += ids_a == ids_b
        sb = dict(tb)
        for i, s in ta:
            if i in sb and s:
                max_rel = max(max_rel, abs(s - sb[i]) / abs(s))
    return {
        "queries": len(a),
        "same_top10_modulo_ties": same_set,
        "identical_top10_order": same_order,
        "max_rel_score_diff": max_rel,
    }




def table(results: list[dict]) -> str:
    head = (
        f"{'backend':8} {'size':>7} {'index/s':>8} {'disk MB':>8} {'RSS MB':>7} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'cpu p95':>8} {'filt p95':>8} {'reopen s':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in sorted(results, key=lambda r: (r["backend"], r["size"])):
        lines.append(
            f"{r['backend']:8} {r['size']:>7} {r['index_per_s']:>8.0f} {r['disk_mb']:>8.1f} {r['peak_rss_mb']:>7.0f} "
            f"{r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} {r.get('cpu_p95_ms', float('nan')):>8.2f} "
            f"{r['filtered_p95_ms']:>8.2f} {r['reopen_first_query_s']:>8.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--backend", nargs="+", choices=sorted(BACKENDS), default=["local", "edge"])
    ap.add_argument("--out", type=Path, default=Path("evals/bench/results"))
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/sanad_bench_cache"))
    ap.add_argument("--workdir", default=tempfile.gettempdir(), help="where the stores are built (then deleted)")
    ap.add_argument("--worker", nargs=3, metavar=("BACKEND", "SIZE", "CORPUS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        backend, size, corpus = args.worker
        print(json.dumps(worker(backend, int(size), Path(corpus), args.queries, args.workdir)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "store_scale.json"
    old = json.loads(results_path.read_text()) if results_path.exists() else {"runs": []}
    runs = {(r["backend"], r["size"]): r for r in old["runs"]}
    encode_rates = old.get("encode_per_s_per_core", {})
    for size in args.sizes:
        corpus, rate = corpus_file(size, args.cache)
        encode_rates[str(size)] = rate
        for backend in args.backend:
            t = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    backend,
                    str(size),
                    str(corpus),
                    "--queries",
                    str(args.queries),
                    "--workdir",
                    args.workdir,
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                print(f"{backend} {size}: FAILED\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[(backend, size)] = r
            print(
                f"{backend:6} {size:>7}: index {r['index_per_s']:.0f}/s  p50 {r['p50_ms']:.2f} ms  "
                f"p95 {r['p95_ms']:.2f} ms  ({time.perf_counter() - t:.0f} s)",
                flush=True,
            )
    results = list(runs.values())
    agree = {}
    for size in sorted({s for _, s in runs}):
        ref = next((k for k in (("local", size), ("local_mem", size)) if k in runs), None)
        for other in ("edge", "edge_opt"):
            if not ref or (other, size) not in runs:
                continue
            a, b = runs[ref], runs[(other, size)]
            n = min(len(a["top10"]), len(b["top10"]))
            agree[f"{other}@{size}"] = {
                "unfiltered": agreement(a["top10"][:n], b["top10"][:n]),
                "filtered": agreement(a["filtered_top10"][:n], b["filtered_top10"][:n]),
            }
    results_path.write_text(
        json.dumps(
            {"runs": results, "agreement": agree, "encode_per_s_per_core": encode_rates}, ensure_ascii=False, indent=1
        )
    )
    print()
    print(table(results))
    print(
        "\nencoding (LexicalEncoder.document), chunks/s per core: "
        + ", ".join(f"{k}: {v:.0f}" for k, v in encode_rates.items())
    )
    for size, a in agree.items():
        print(f"agreement local mode vs {size}: {a}")
    from evals.bench.common import plot_latency_vs_size

    png = plot_latency_vs_size(results, args.out, group="backend", ylabel="sparse query latency (ms)",
                               title="Sanad lexical query latency vs corpus size")
    print(f"\nresults: {results_path}" + (f"\nplot: {png}" if png else ""))


if __name__ == "__main__":
    main()
