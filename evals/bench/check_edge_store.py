"""Run Sanad's PassageStore / Indexer / Sanad.search on the qdrant-edge shim and on local mode; compare.

    python evals/bench/check_edge_store.py

Exits non-zero on any disagreement. Covers: ensure() (create + manifest),
indexing the seeds, re-index (unchanged), an edited article (stale chunks
removed), list/count/delete document, searches with and without filters
(doc_ids, date range), hybrid prefetch + RRF/DBSF with a dense vector,
persistence across close/reopen, and the one-process lock (StoreBusy mapping).
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from edge_store import EdgeClient  # noqa: E402
from qdrant_client import QdrantClient, models  # noqa: E402

from index.ingest import Indexer  # noqa: E402
from rag.engine import Sanad  # noqa: E402
from rag.lexical import LEXICAL_VERSION, LexicalEncoder  # noqa: E402
from rag.models import Article, SearchFilters  # noqa: E402
from rag.settings import Settings  # noqa: E402
from rag.store import PassageStore  # noqa: E402

SEEDS = ROOT / "seeds"
QUERIES = [
    "ما هي المرحلة الثانية من اتفاق غزة؟",
    "اجتماع القاهرة",
    "من حضر الاجتماع؟",
    "الاقتصاد والتضخم",
    "Gaza ceasefire Cairo",
    "ما هو قرار مجلس الأمن؟",
    "الانتخابات",
    "أسعار النفط",
    "كرة القدم",
    "الطقس",
]
DIM = 8
failures: list[str] = []


def same(a, b) -> bool:
    """Equal, except (id, score) lists: same scores within 1e-4 relative, ids equal up to swaps among tied scores."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and a and isinstance(a[0], tuple) and len(a[0]) == 2 and isinstance(a[0][1], float):
        if len(a) != len(b) or any(abs(x[1] - y[1]) > 1e-4 * max(1.0, abs(x[1])) for x, y in zip(a, b, strict=False)):
            return False
        groups = lambda xs: sorted((round(s, 3), i) for i, s in xs)  # noqa: E731
        return groups(a) == groups(b)
    return a == b


def check(cond: bool, what: str) -> None:
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def build(client, data_dir: Path, dense: bool = False) -> tuple[Sanad, PassageStore, Settings]:
    settings = Settings(data_dir=data_dir)
    store = PassageStore(client, "sanad" + ("_h" if dense else ""), "none", DIM if dense else None, LEXICAL_VERSION)
    store.ensure()
    # what rag/store.py would add for scale (qdrant-edge/server use them; local mode ignores them)
    client.create_payload_index(store.chunks, "doc_id", models.PayloadSchemaType.KEYWORD)
    client.create_payload_index(store.chunks, "date_num", models.PayloadSchemaType.INTEGER)
    return (
        Sanad(settings, store, LexicalEncoder(gram_weight=settings.retrieval.gram_weight), None, None),
        store,
        settings,
    )


def snapshot(engine: Sanad) -> dict:
    out = {}
    ids = sorted(p.stem for p in SEEDS.glob("*.txt"))
    for q in QUERIES:
        out[q] = [(p.chunk_id, p.score) for p in engine.search(q, top_k=8)]
        out[q + " |doc"] = [
            (p.chunk_id, p.score) for p in engine.search(q, top_k=8, filters=SearchFilters(doc_ids=ids[:2]))
        ]
    return out


def run(client, data_dir: Path) -> dict:
    engine, store, settings = build(client, data_dir)
    indexer = Indexer(store, engine.encoder, None, settings.index)
    s1 = indexer.index_paths([SEEDS])
    s2 = indexer.index_paths([SEEDS])
    res = {"first": (s1.added, s1.chunks, len(s1.skipped)), "again": (s2.unchanged, s2.added + s2.updated)}
    res["search"] = snapshot(engine)
    res["chunks"] = store.count_chunks()
    # an edited article: half its text -> fewer chunks, stale ones gone
    doc = sorted(p.stem for p in SEEDS.glob("*.txt"))[0]
    text = (SEEDS / f"{doc}.txt").read_text()
    art = Article(id=doc, title="t", text=text[: len(text) // 2], date=date(2025, 11, 25))
    res["edit"] = indexer.index_article(art)
    res["edit_chunks"] = store.count_chunks(doc)
    res["after_edit_total"] = store.count_chunks()
    res["date_filter"] = [
        p.doc_id
        for p in engine.search("غزة", top_k=5, filters=SearchFilters(date_from="2025-11-01", date_to="2025-11-30"))
    ]
    res["date_filter_out"] = [
        p.doc_id for p in engine.search("غزة", top_k=5, filters=SearchFilters(date_from="2026-01-01"))
    ]
    res["docs"] = [d["doc_id"] for d in store.list_documents()]
    res["deleted"] = store.delete_document(doc)
    res["deleted_again"] = store.delete_document(doc)
    res["after_delete"] = (store.count_chunks(doc), store.count_chunks(), store.get_document(doc))
    # hybrid: dense + sparse prefetch with RRF and DBSF
    _, hstore, _ = build(client, data_dir, dense=True)
    rng = random.Random(3)
    enc = LexicalEncoder()
    pts = []
    seen: set[str] = set()  # seeds repeat their title: tied sparse scores would make RRF ranks arbitrary
    for i, p in enumerate(sorted(SEEDS.glob("*.txt"))):
        paras = [x.strip() for x in p.read_text().split("\n\n") if x.strip()]
        for j, para in enumerate(paras):
            if para in seen:
                continue
            seen.add(para)
            pts.append(
                models.PointStruct(
                    id=i * 1000 + j,
                    vector={"lexical": enc.document(para), "dense": [rng.uniform(-1, 1) for _ in range(DIM)]},
                    payload={"doc_id": p.stem, "text": para},
                )
            )
    hstore.upsert_chunks(pts)
    qv = [rng.uniform(-1, 1) for _ in range(DIM)]
    # a query whose sparse top-20 has no tied scores (ties make RRF ranks arbitrary in either engine)
    for q in ["اتفاق غزة", "المرحلة الثانية", "مجلس الأمن", "القاهرة", "الاقتصاد"]:
        sc = [
            p.score
            for p in hstore.client.query_points(hstore.chunks, query=enc.query(q), using="lexical", limit=20).points
        ]
        if all(a - b > 1e-3 for a, b in zip(sc, sc[1:], strict=False)):
            break
    res["hybrid_query"] = q
    for fusion in ("rrf", "dbsf"):
        hits = hstore.search(enc.query(q), qv, limit=8, candidates=20, query_filter=None, fusion=fusion)
        res[f"hybrid_{fusion}"] = [(p.id, float(p.score)) for p in hits]
    return res


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="edgecheck_"))
    local_client = QdrantClient(path=str(tmp / "local"))
    local = run(local_client, tmp / "local_data")
    local_client.close()
    edge_client = EdgeClient(tmp / "edge")
    edge = run(edge_client, tmp / "edge_data")
    for key in local:
        ok = same(local[key], edge[key])
        check(ok, f"{key}: local == edge" + ("" if ok else f"\n   local={local[key]}\n   edge ={edge[key]}"))
    check(edge["first"][0] == 5 and edge["again"] == (5, 0), f"index/re-index counts {edge['first']} {edge['again']}")
    check(
        edge["after_delete"][:1] == (0,)
        and edge["after_delete"][2] is None
        and edge["deleted"]
        and not edge["deleted_again"],
        f"delete_document {edge['after_delete'][:2]}",
    )
    check(any(edge["search"].values()), "searches return passages")
    # lock: a second process cannot open the store while we hold it
    probe = (
        f"import sys; sys.path[:0]=[{str(ROOT)!r},{str(Path(__file__).parent)!r}]\n"
        "from edge_store import EdgeClient\n"
        f"try:\n    EdgeClient({str(tmp / 'edge')!r}); print('opened')\n"
        "except RuntimeError as e:\n    print('busy' if 'already accessed' in str(e) else e)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip()
    check(out == "busy", f"second process refused while open ({out})")
    edge_client.close()
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip()
    check(out == "opened", f"second process opens after close ({out})")
    # persistence: reopen and search again
    edge_client = EdgeClient(tmp / "edge")
    store = PassageStore(edge_client, "sanad", "none", None, LEXICAL_VERSION)
    store.ensure()
    check(store.count_chunks() == edge["after_delete"][1], f"count after reopen {store.count_chunks()}")
    check(len(store.list_documents()) == 4, "documents after reopen")
    mismatch = PassageStore(edge_client, "sanad", "openai:x:8", None, LEXICAL_VERSION)
    try:
        mismatch.ensure()
        check(False, "manifest mismatch refused")
    except Exception as exc:  # StoreMismatch
        check(type(exc).__name__ == "StoreMismatch", "manifest mismatch refused")
    edge_client.close()
    if not failures:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{len(failures)} failure(s)" + (f"; stores kept under {tmp}" if failures else ""))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
