"""A bulk run is searchable lexically at once; dense vectors are filled in afterwards, resumably."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.ingest import Indexer
from rag.engine import Sanad
from rag.models import Article
from rag.settings import Settings
from rag.store import DENSE
from tests.conftest import SEEDS

EN_Q = "Who took part in the emergency security meeting held in Cairo?"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Sanad]:
    eng = Sanad.open(Settings.in_memory(tmp_path))  # the default: the bundled encoder
    if eng.embedder is None:
        pytest.skip("no encoder configured")
    yield eng
    eng.close()


def deferred(engine: Sanad) -> Indexer:
    return Indexer(engine.store, engine.encoder, engine.embedder, engine.settings.index, defer_dense=True)


def dense_ids(engine: Sanad) -> set[str]:
    points, _ = engine.store.client.scroll(engine.store.chunks, limit=10_000, with_vectors=True)
    return {str(p.id) for p in points if DENSE in (p.vector or {})}


def test_searchable_before_the_dense_pass_and_complete_after_it(engine: Sanad) -> None:
    indexer = deferred(engine)
    summary = indexer.index_paths([SEEDS])
    chunks = engine.store.count_chunks()
    assert summary.documents == 5 and engine.store.count_dense_pending() == chunks > 0
    assert engine.retriever.dense_ready() is False
    passages = engine.search("اجتماعا أمنيا رفيع المستوى جمع رؤساء أجهزة المخابرات")  # lexical, at once
    assert passages and passages[0].doc_id == "003_046bdc7566d0cd7e"

    stop = threading.Event()
    first = indexer.fill_dense(batch=4, on_batch=lambda n: stop.set(), stop=stop)  # "killed" after one batch
    assert first == 4 and engine.store.count_dense_pending() == chunks - 4
    rest = indexer.fill_dense(batch=4)  # the next run continues where the first stopped
    assert first + rest == chunks and engine.store.count_dense_pending() == 0
    assert engine.store.count_chunks() == chunks  # nothing duplicated, nothing lost
    assert len(dense_ids(engine)) == chunks

    fresh = Sanad(engine.settings, engine.store, engine.encoder, engine.embedder, None)
    assert fresh.retriever.dense_ready() is True
    answer = fresh.ask(EN_Q)  # hybrid again: the English question finds the Arabic article
    assert answer.answerable and "003_046bdc7566d0cd7e" in {c.doc_id for c in answer.citations}


def test_a_chunk_replaced_while_its_vector_was_computed_is_not_written_back(engine: Sanad,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    indexer = deferred(engine)
    text = "اجتماع في الدوحة\nعقد الوسطاء اجتماعا في الدوحة لبحث المرحلة الثانية من الاتفاق وتبادل الأسرى."
    indexer.index_articles([Article(id="doha", text=text)])
    stale = engine.store.dense_pending(100)
    indexer.index_articles([Article(id="doha", text=text.replace("الدوحة", "القاهرة"))])  # replaced meanwhile
    calls = iter([stale])
    real = engine.store.dense_pending
    monkeypatch.setattr(engine.store, "dense_pending", lambda limit: next(calls, None) or real(limit))
    indexer.fill_dense()
    assert engine.store.count_chunks("doha") == engine.store.get_document("doha")["chunks"]
    assert all("القاهرة" in p.text for p in engine.search("اجتماع الوسطاء"))
