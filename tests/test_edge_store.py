"""The default embedded engine (qdrant-edge, ``rag/edge.py``) behaves like qdrant-client's local mode.

Congruence, as for the server path: the same calls on both, identical chunks,
documents, rankings, answers and filters; then what only an on-disk store has
(surviving a restart, one process at a time).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from rag.engine import Sanad
from rag.models import SearchFilters
from rag.settings import Settings
from rag.store import StoreBusy
from tests.test_qdrant_server_path import (
    DATED_ID,
    QUERIES,
    QUESTIONS,
    SEED_IDS,
    chunks,
    documents,
    index_seeds,
    indexer,
)


def ranking(engine: Sanad, query: str, **kw: object) -> list[tuple[str, str, float]]:
    # qdrant-edge scores in float32, local mode in float64: equal to about six digits.
    return [(p.doc_id, p.chunk_id, round(p.score, 3)) for p in engine.search(query, **kw)]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sanad, Sanad]]:
    tmp = tmp_path_factory.mktemp("edge")
    local = Sanad.open(Settings.in_memory(tmp / "local"))
    edge = Sanad.open(Settings(data_dir=tmp / "edge"))
    assert type(edge.store.client).__name__ == "EdgeClient"  # the default for an on-disk data dir
    index_seeds(local)
    index_seeds(edge)
    yield local, edge
    local.close()
    edge.close()


def test_same_chunks_and_documents(seeded: tuple[Sanad, Sanad]) -> None:
    local, edge = seeded
    assert chunks(edge) == chunks(local)
    assert documents(edge) == documents(local)
    for doc_id in SEED_IDS:
        assert edge.store.count_chunks(doc_id) == local.store.count_chunks(doc_id) > 0


@pytest.mark.parametrize("query", QUERIES)
def test_same_ranking(seeded: tuple[Sanad, Sanad], query: str) -> None:
    local, edge = seeded
    assert ranking(edge, query, top_k=8) == ranking(local, query, top_k=8)


@pytest.mark.parametrize("question", QUESTIONS)
def test_same_answers(seeded: tuple[Sanad, Sanad], question: str) -> None:
    local, edge = seeded
    assert edge.ask(question).model_dump() == local.ask(question).model_dump()


def test_same_filtered_results(seeded: tuple[Sanad, Sanad]) -> None:
    local, edge = seeded
    for flt in (SearchFilters(doc_ids=[SEED_IDS[0], DATED_ID]), SearchFilters(date_from=date(2026, 1, 1))):
        for query in QUERIES[:4]:
            assert ranking(edge, query, top_k=10, filters=flt) == ranking(local, query, top_k=10, filters=flt)


def test_store_survives_restart_and_deletes_stick(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    engine = Sanad.open(settings)
    index_seeds(engine)
    assert engine.store.delete_document(SEED_IDS[0])
    before = chunks(engine)
    engine.close()
    reopened = Sanad.open(settings)
    try:
        assert chunks(reopened) == before
        assert [d["doc_id"] for d in reopened.store.list_documents()] == SEED_IDS[1:]
        again = indexer(reopened).index_paths([Path(__file__).resolve().parents[1] / "seeds"])
        assert (again.added, again.unchanged) == (1, len(SEED_IDS) - 1)
    finally:
        reopened.close()


def test_second_process_is_refused_while_the_first_holds_the_store(tmp_path: Path) -> None:
    code = ("import time\nfrom rag.engine import Sanad\nfrom rag.settings import Settings\n"
            f"e = Sanad.open(Settings(data_dir={str(tmp_path)!r}))\nprint('ready', flush=True)\ntime.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreBusy, match="SANAD_DATA_DIR"):
            Sanad.open(Settings(data_dir=tmp_path))
    finally:
        holder.kill()
        holder.wait(timeout=10)
    Sanad.open(Settings(data_dir=tmp_path)).close()  # the lock went with the holder


def test_a_chunk_waiting_for_its_vector_is_ranked_alike_on_edge_and_local_mode(tmp_path: Path) -> None:
    """The mixed ranking's formula (a condition on the ``dense`` payload switches the estimate on) gives the
    same scores on qdrant-edge as on local mode."""
    from qdrant_client import QdrantClient, models

    from rag.edge import EdgeClient

    def scores(client: Any) -> list[tuple[int, float]]:
        dense = {"d": models.VectorParams(size=2, distance=models.Distance.COSINE)}
        client.create_collection("c", vectors_config=dense,
                                 sparse_vectors_config={"l": models.SparseVectorParams(modifier=models.Modifier.IDF)})
        lex = models.SparseVector(indices=[1], values=[1.0])
        client.upsert("c", [models.PointStruct(id=1, vector={"d": [1.0, 0.2], "l": lex}, payload={"dense": 1}),
                            models.PointStruct(id=2, vector={"l": models.SparseVector(indices=[1], values=[3.0])},
                                               payload={"dense": 0})])
        waiting = models.FieldCondition(key="dense", match=models.MatchValue(value=0))
        formula = models.FormulaQuery(
            formula=models.SumExpression(sum=["$score[0]", models.MultExpression(mult=[waiting, 0.75, "$score[1]"])]),
            defaults={"$score[0]": 0.0, "$score[1]": 0.0})
        found = client.query_points("c", prefetch=[models.Prefetch(query=[1.0, 0.0], using="d", limit=5),
                                                   models.Prefetch(query=lex, using="l", limit=5)],
                                    query=formula, limit=5)
        return [(int(p.id), round(p.score, 4)) for p in found.points]

    local = scores(QdrantClient(":memory:"))
    assert local == scores(EdgeClient(tmp_path / "edge"))
    assert [pid for pid, _ in local] == [1, 2] and local[1][1] > 0  # the waiting chunk scored by its estimate
