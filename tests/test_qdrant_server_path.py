"""Sanad on a Qdrant server by URL behaves exactly like Sanad on the embedded store.

Congruence tests in the style of qdrant-client's own: the same scenario runs on
the embedded store (``Settings.in_memory``) and over HTTP on a fake Qdrant
server (``tests/fakes/qdrant_server.py``: real HTTP, qdrant-client's REST
models, executed on a local-mode backend), and the results must be identical.
Then the failure modes that only a server has: nothing listening, the server
going away after open, and coming back on the same port.
"""

from __future__ import annotations

import importlib.metadata
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from qdrant_client.common.version_check import is_compatible

from index.ingest import Indexer, IndexSummary
from rag.engine import Sanad
from rag.models import Article, SearchFilters
from rag.settings import QdrantSettings, Settings
from rag.store import StoreUnavailable
from tests.fakes.qdrant_server import SERVER_VERSION, FakeQdrant
from tests.servers import free_port

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
SEED_IDS = sorted(p.stem for p in SEEDS.glob("*.txt"))
DATED_ID = "004_62f51f2fac3a5964"  # the seed with a ``date 2026-01-01`` line

QUERIES = [
    "اجتماع القاهرة",
    "المرحلة الثانية من اتفاق غزة",
    "رئيس المخابرات المصرية",
    "مفاوضات حماس وإسرائيل لوقف إطلاق النار",
    "اجتماع دولي عبر الإنترنت",
    "Cairo meeting on Gaza",
    "كرة القدم والطقس في لندن",
]
QUESTIONS = [
    "ما الذي توافق عليه اجتماع القاهرة؟",
    "من التقى رئيس المخابرات المصرية؟",
    "ما هي الدول التي شاركت في الاجتماع الأمني؟",
    "كم عدد الدول المشاركة في الاجتماع الدولي عبر الإنترنت؟",
    "من فاز بكأس العالم لكرة القدم؟",
]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeQdrant]:
    with FakeQdrant() as server:
        yield server


def server_settings(data_dir: Path, url: str, collection: str = "sanad", timeout: float = 5) -> Settings:
    return Settings(data_dir=data_dir, qdrant=QdrantSettings(url=url, collection=collection, timeout=timeout))


def indexer(engine: Sanad) -> Indexer:
    return Indexer(engine.store, engine.encoder, engine.embedder, engine.settings.index)


def index_seeds(engine: Sanad) -> IndexSummary:
    summary = indexer(engine).index_paths([SEEDS])
    assert summary.documents == len(SEED_IDS) and not summary.skipped, summary
    return summary


def _open_pair(tmp: Path, fake: FakeQdrant, collection: str) -> tuple[Sanad, Sanad]:
    embedded = Sanad.open(Settings.in_memory(tmp / "embedded"))
    served = Sanad.open(server_settings(tmp / "server", fake.url, collection=collection))
    return embedded, served


@pytest.fixture(scope="module")
def seeded(fake: FakeQdrant, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sanad, Sanad]]:
    """Embedded and server engines with the seeds indexed; read-only."""
    embedded, served = _open_pair(tmp_path_factory.mktemp("seeded"), fake, "seeded")
    summaries = index_seeds(embedded), index_seeds(served)
    assert summaries[0].chunks == summaries[1].chunks > len(SEED_IDS)
    yield embedded, served
    embedded.close()
    served.close()


@pytest.fixture
def pair(fake: FakeQdrant, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Sanad, Sanad]]:
    """Fresh, empty embedded and server engines (the server one in its own collection)."""
    embedded, served = _open_pair(tmp_path, fake, f"t_{request.node.name}".replace("[", "_").replace("]", ""))
    yield embedded, served
    embedded.close()
    served.close()


# --------------------------------------------------------------------------- snapshots


def chunks(engine: Sanad) -> list[tuple[str, dict[str, Any]]]:
    """Every chunk point (id, payload), sorted by id."""
    out: list[tuple[str, dict[str, Any]]] = []
    offset = None
    while True:
        points, offset = engine.store.client.scroll(engine.store.chunks, limit=64, offset=offset, with_payload=True)
        out.extend((str(p.id), dict(p.payload or {})) for p in points)
        if offset is None:
            return sorted(out, key=lambda item: item[0])


def documents(engine: Sanad) -> list[dict[str, Any]]:
    # ``indexed_at`` and ``indexed_ts`` are wall-clock stamps: equal only to the second.
    clock = ("indexed_at", "indexed_ts")
    return [{k: v for k, v in r.items() if k not in clock} for r in engine.store.list_documents()]


class Score(float):
    """A score equal to another within 2e-3: the server computes cosines in float32, local mode in float64
    (rounding both would still split a value that sits on a rounding boundary)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, int | float) and abs(self - other) <= 2e-3

    __hash__ = float.__hash__


def ranking(engine: Sanad, query: str, **kw: Any) -> list[tuple[str, str, float]]:
    return [(p.doc_id, p.chunk_id, Score(p.score)) for p in engine.search(query, **kw)]


# --------------------------------------------------------------------------- the fake itself


def test_fake_speaks_qdrant_envelopes(fake: FakeQdrant) -> None:
    root = httpx.get(fake.url + "/").json()
    assert root["version"] == SERVER_VERSION
    assert is_compatible(importlib.metadata.version("qdrant-client"), SERVER_VERSION)  # the client stays quiet
    missing = httpx.get(fake.url + "/collections/none/exists").json()
    assert missing["status"] == "ok" and missing["result"] == {"exists": False}
    unknown = httpx.post(fake.url + "/collections/none/points/search", json={})
    assert unknown.status_code == 404 and "does not implement POST" in unknown.json()["status"]["error"]
    bad = httpx.put(fake.url + "/collections/bad", json={"vectors": {"size": "x"}})
    assert bad.status_code == 400 and "Format error" in bad.json()["status"]["error"]
    gone = httpx.post(fake.url + "/collections/none/points/count", json={})
    assert gone.status_code == 404 and "doesn't exist" in gone.json()["status"]["error"]


# --------------------------------------------------------------------------- congruence


def test_server_path_goes_over_http(seeded: tuple[Sanad, Sanad], fake: FakeQdrant) -> None:
    _, served = seeded
    before = len(fake.requests)
    assert served.search(QUERIES[0])
    assert ("POST", "/collections/seeded/points/query") in fake.requests[before:]
    for path in ("/collections/seeded", "/collections/seeded/points"):
        assert ("PUT", path) in fake.requests


def test_index_gives_same_chunks_and_documents(seeded: tuple[Sanad, Sanad]) -> None:
    embedded, served = seeded
    assert chunks(served) == chunks(embedded)
    assert documents(served) == documents(embedded)
    assert [d["doc_id"] for d in documents(served)] == SEED_IDS
    assert served.store.count_chunks() == embedded.store.count_chunks() == len(chunks(embedded))
    for doc_id in SEED_IDS:
        assert served.store.count_chunks(doc_id) == embedded.store.count_chunks(doc_id) > 0


@pytest.mark.parametrize("query", QUERIES)
def test_search_ranks_identically(seeded: tuple[Sanad, Sanad], query: str) -> None:
    embedded, served = seeded
    for k in (3, 8):
        assert ranking(served, query, top_k=k) == ranking(embedded, query, top_k=k)
    if query in QUERIES[:5]:
        assert ranking(embedded, query)


@pytest.mark.parametrize("question", QUESTIONS)
def test_ask_answers_identically(seeded: tuple[Sanad, Sanad], question: str) -> None:
    embedded, served = seeded
    want, got = embedded.ask(question), served.ask(question)
    assert got.model_dump() == want.model_dump()


def test_filters_apply_identically(seeded: tuple[Sanad, Sanad]) -> None:
    embedded, served = seeded
    cases = [
        SearchFilters(doc_ids=[SEED_IDS[1], SEED_IDS[3]]),
        SearchFilters(date_from=date(2026, 1, 1)),
        SearchFilters(date_from=date(2025, 1, 1), date_to=date(2025, 12, 31)),
        SearchFilters(doc_ids=[DATED_ID], date_to=date(2026, 6, 30)),
    ]
    for flt in cases:
        for query in QUERIES[:5]:
            got = ranking(served, query, top_k=10, filters=flt)
            assert got == ranking(embedded, query, top_k=10, filters=flt)
            if flt.doc_ids:
                assert {d for d, _, _ in got} <= set(flt.doc_ids)
            if flt.date_from == date(2026, 1, 1):
                assert {d for d, _, _ in got} <= {DATED_ID}
            if flt.date_to == date(2025, 12, 31):
                assert got == []  # only one seed is dated, and not in 2025
    assert ranking(served, QUERIES[4], filters=SearchFilters(doc_ids=[DATED_ID]))


def test_reindex_unchanged_changes_nothing(pair: tuple[Sanad, Sanad]) -> None:
    for engine in pair:
        index_seeds(engine)
    before = [(chunks(e), documents(e)) for e in pair]
    again = [index_seeds(e) for e in pair]
    for summary in again:
        assert (summary.added, summary.updated, summary.unchanged) == (0, 0, len(SEED_IDS))
    assert again[0].chunks == again[1].chunks
    assert [(chunks(e), documents(e)) for e in pair] == before
    assert before[0] == before[1]


def test_update_and_delete_identically(pair: tuple[Sanad, Sanad]) -> None:
    text = (SEEDS / f"{SEED_IDS[0]}.txt").read_text(encoding="utf-8-sig")
    first = Article(id="extra", title="مقال إضافي", text=text, date=date(2025, 11, 25))
    changed = first.model_copy(update={"text": text + "\n\nوأكد المشاركون أن الاجتماع القادم سيعقد في الدوحة."})
    outcomes = []
    for engine in pair:
        index_seeds(engine)
        ix = indexer(engine)
        added = ix.index_article(first)
        old_ids = {cid for cid, pl in chunks(engine) if pl["doc_id"] == "extra"}
        updated = ix.index_article(changed)
        new_ids = {cid for cid, pl in chunks(engine) if pl["doc_id"] == "extra"}
        assert engine.store.count_chunks("extra") == len(new_ids) == updated[1]
        assert new_ids != old_ids
        hit = ranking(engine, "الاجتماع القادم سيعقد في الدوحة", filters=SearchFilters(date_to=date(2025, 12, 31)))
        outcomes.append((added, updated, sorted(new_ids), hit, chunks(engine), documents(engine)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0][0] == "added" and outcomes[0][1][0] == "updated"
    assert outcomes[0][3] and {d for d, _, _ in outcomes[0][3]} == {"extra"}

    after = []
    for engine in pair:
        assert engine.store.delete_document("extra") is True
        assert engine.store.delete_document("extra") is False
        assert engine.store.count_chunks("extra") == 0
        assert engine.store.get_document("extra") is None
        assert all(p.doc_id != "extra" for p in engine.search("الاجتماع القادم سيعقد في الدوحة", top_k=10))
        after.append((chunks(engine), documents(engine), ranking(engine, QUERIES[0], top_k=10)))
    assert after[0] == after[1]
    assert [d["doc_id"] for d in after[0][1]] == SEED_IDS


def test_second_client_sees_the_same_server_store(seeded: tuple[Sanad, Sanad], fake: FakeQdrant,
                                                  tmp_path: Path) -> None:
    _, served = seeded
    other = Sanad.open(server_settings(tmp_path, fake.url, collection="seeded"))
    try:
        assert documents(other) == documents(served)
        assert ranking(other, QUERIES[1]) == ranking(served, QUERIES[1])
        assert index_seeds(other).unchanged == len(SEED_IDS)
    finally:
        other.close()


# --------------------------------------------------------------------------- availability


def test_nothing_listening_is_store_unavailable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    before = set(threading.enumerate())
    # The client checks the server's version in a thread of its own, and warns when it cannot.
    with pytest.warns(UserWarning, match="Failed to obtain server version"):
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable, match="not reachable"):
            Sanad.open(server_settings(tmp_path, url, timeout=0.5))
        assert time.monotonic() - t0 < 5
        for thread in set(threading.enumerate()) - before:
            thread.join(timeout=5)


def test_sub_second_timeout_still_reaches_the_server(fake: FakeQdrant, tmp_path: Path) -> None:
    engine = Sanad.open(server_settings(tmp_path, fake.url, collection="short_timeout", timeout=0.5))
    try:
        engine.store.ping()
        assert engine.store.count_chunks() == 0
    finally:
        engine.close()


def test_server_going_away_and_coming_back(tmp_path: Path) -> None:
    with FakeQdrant() as server:
        url = server.url
        engine = Sanad.open(server_settings(tmp_path, url, timeout=0.5))
        try:
            index_seeds(engine)
            want = ranking(engine, QUERIES[0])
            engine.store.ping()

            server.stop()
            t0 = time.monotonic()
            with pytest.raises(StoreUnavailable, match="not reachable"):
                engine.store.ping()
            assert time.monotonic() - t0 < 5

            assert server.start() == url  # same port, same data (like a server with storage)
            engine.store.ping()
            assert ranking(engine, QUERIES[0]) == want
            assert index_seeds(engine).unchanged == len(SEED_IDS)
        finally:
            engine.close()
