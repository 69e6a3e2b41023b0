"""A bulk run is searchable at once; dense vectors are filled in afterwards, newest first, resumably; a chunk
waiting for its vector is ranked lexically beside the hybrid-ranked ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from index.ingest import Indexer
from rag.engine import Sanad
from rag.models import Article
from rag.settings import Settings
from rag.store import DENSE
from service.app import create_app
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
    passages = engine.search("اجتماعا أمنيا رفيع المستوى جمع رؤساء أجهزة المخابرات")  # lexical, at once
    assert passages and passages[0].doc_id == "003_046bdc7566d0cd7e"

    stop = threading.Event()
    first = indexer.fill_dense(batch=4, on_batch=lambda n: stop.set(), stop=stop)  # "killed" after one batch
    assert first == 4 and engine.store.count_dense_pending() == chunks - 4
    rest = indexer.fill_dense(batch=4)  # the next run continues where the first stopped
    assert first + rest == chunks and engine.store.count_dense_pending() == 0
    assert engine.store.count_chunks() == chunks  # nothing duplicated, nothing lost
    assert len(dense_ids(engine)) == chunks

    # Hybrid now, in the same process (no restart, no cached mode): the English question finds the Arabic article.
    answer = engine.ask(EN_Q)
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


def wait_for(check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_the_service_fills_the_vectors_in_the_background_while_it_answers(engine: Sanad) -> None:
    deferred(engine).index_paths([SEEDS])
    chunks = engine.store.count_chunks()
    with TestClient(create_app(engine.settings, engine)) as client:
        assert client.post("/v1/chat", json={"question": "من يرأس وفد حماس في مفاوضات القاهرة؟"}).json()["answerable"]
        dense = wait_for(lambda: (d := client.get("/readyz").json()["store"]["dense"])["pending"] == 0 and d)
        assert dense == {"done": chunks, "pending": 0, "retrieval": "hybrid", "encoder": "onnxruntime"}
        assert client.get("/v1/documents").json()["dense_pending"] == 0
        answer = client.post("/v1/chat", json={"question": EN_Q}).json()
        assert answer["answerable"] and "003_046bdc7566d0cd7e" in {c["doc_id"] for c in answer["citations"]}
    assert len(dense_ids(engine)) == chunks


def test_an_uploaded_archive_is_searchable_at_once_and_dense_soon_after(engine: Sanad, tmp_path: Path) -> None:
    rows = [{"id": f"brief-{i}", "title": f"خبر {i}", "date": "2015-07-22",
             "text": f"افتتحت البلدية الحديقة رقم {i} في حي النسيم بمساحة {1000 + i} متر مربع وزودتها بممرات للمشاة."}
            for i in range(25)]
    # The background fill held back while searching: with it running, which briefs had their vectors when the
    # search ran depended on timing (25 near-identical briefs), and the test raced it.
    engine.settings.service.fill_dense = False
    with TestClient(create_app(engine.settings, engine)) as client:
        r = client.post("/v1/documents", files={"file": ("briefs.json", json.dumps(rows, ensure_ascii=False))})
        assert r.status_code == 201 and len(r.json()["documents"]) == 25
        assert client.get("/v1/documents").json()["dense_pending"] > 0  # more than embedded inline
        hit = client.post("/v1/search", json={"query": "الحديقة رقم 7 في حي النسيم"}).json()["passages"][0]
        assert hit["doc_id"] == "brief-7"
        client.app.state.sanad.indexer.fill_dense()  # type: ignore[attr-defined]  # what the service runs
        assert client.get("/v1/documents").json()["dense_pending"] == 0
    assert len(dense_ids(engine)) == engine.store.count_chunks()


def cold_index_command(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """``sanad index seeds`` into ``tmp_path/data`` with an empty vector cache, and its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANAD_")}
    env.update(PYTHONUNBUFFERED="1", SANAD_EMBED__CACHE_PATH=str(tmp_path / "cold.sqlite3"))  # nothing cached
    return [sys.executable, "-m", "sanad.cli", "index", str(SEEDS), "--data-dir", str(tmp_path / "data")], env


def signalled_in_dense_pass(cmd: list[str], env: dict[str, str], sig: signal.Signals) -> tuple[int, str, str]:
    """Run ``cmd``, send ``sig`` as soon as it says the lexical pass is done; exit code, stdout, stderr."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "searchable now" in line:
            proc.send_signal(sig)
            break
    out, rest = proc.communicate(timeout=120)
    return proc.returncode, out, "".join(lines) + rest


def test_sanad_index_killed_in_the_dense_pass_is_searchable_and_resumes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cmd, env = cold_index_command(tmp_path)
    code, out, err = signalled_in_dense_pass(cmd, env, signal.SIGKILL)  # killed while the first batch is encoded
    assert code == -signal.SIGKILL, err
    assert "5 documents (5 added" in out

    asked = subprocess.run([sys.executable, "-m", "sanad.cli", "ask", "--json", "من يرأس وفد حماس في مفاوضات القاهرة؟",
                            "--data-dir", str(data)], env=env, capture_output=True, text=True, timeout=120)
    assert asked.returncode == 0 and "خليل الحية" in json.loads(asked.stdout)["answer"]  # lexical meanwhile

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "5 documents (0 added, 0 updated, 5 unchanged)" in again.stdout
    assert "chunks done" in again.stderr
    eng = Sanad.open(Settings(data_dir=data, embed={"cache_path": tmp_path / "cold.sqlite3"}))  # type: ignore[arg-type]
    try:
        assert eng.store.count_dense_pending() == 0
        assert len(dense_ids(eng)) == eng.store.count_chunks() == sum(d["chunks"] for d in eng.store.list_documents())
    finally:
        eng.close()


def test_sanad_index_stopped_with_sigterm_says_so_and_resumes(tmp_path: Path) -> None:
    """`docker stop` and systemd send SIGTERM: the dense pass ends as Ctrl-C ends it, and the next run goes on."""
    cmd, env = cold_index_command(tmp_path)
    code, _, rest = signalled_in_dense_pass(cmd, env, signal.SIGTERM)
    assert code == 130, rest
    assert "stopped:" in rest and "chunks still without dense vectors" in rest
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "chunks done" in again.stderr, again.stderr


def test_without_sentence_vectors_the_dense_pass_encodes_chunks_only(engine: Sanad,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert engine.embedder is not None
    settings = engine.settings.index.model_copy(update={"sentence_vectors": False})
    indexer = Indexer(engine.store, engine.encoder, engine.embedder, settings, defer_dense=True)
    indexer.index_paths([SEEDS])
    encoded: list[str] = []
    real = engine.embedder.vectors
    monkeypatch.setattr(engine.embedder, "vectors", lambda texts, **kw: (encoded.extend(texts), real(texts))[1])
    indexer.fill_dense()
    docs = [d["doc_id"] for d in engine.store.list_documents()]
    chunk_texts = {pl["text"] for d in docs for pl in engine.store.document_chunks(d)}
    assert set(encoded) == chunk_texts and engine.store.count_dense_pending() == 0


def test_the_fill_takes_the_newest_articles_first_and_undated_ones_last(engine: Sanad) -> None:
    indexer = deferred(engine)
    body = "عقد الوسطاء اجتماعا لبحث المرحلة الثانية من الاتفاق وتبادل الأسرى في {}."
    indexer.index_articles([Article(id="old", text=body.format("القاهرة"), date="2015-07-21"),
                            Article(id="undated", text=body.format("عمان")),
                            Article(id="new", text=body.format("الدوحة"), date="2015-08-10"),
                            Article(id="mid", text=body.format("أنقرة"), date="2015-07-30")])
    order = []
    while pending := engine.store.dense_pending(1):
        order.append(pending[0][1]["doc_id"])
        indexer.fill_dense(batch=1, on_batch=lambda n: stop.set(), stop=(stop := threading.Event()))
    assert order == ["new", "mid", "old", "undated"]


def test_a_store_that_cannot_order_by_date_is_filled_all_the_same(engine: Sanad,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A Qdrant server collection without the date index refuses an ordered scroll: the fill goes on unordered."""
    indexer = deferred(engine)
    indexer.index_articles([Article(id="a", text="عقد الوسطاء اجتماعا في القاهرة لبحث التهدئة.", date="2015-07-21")])
    real = engine.store.client.scroll

    def scroll(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("order_by") is not None:
            raise RuntimeError("Bad request: No range index for `order_by` key `date_num`")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.store.client, "scroll", scroll)
    assert indexer.fill_dense() == engine.store.count_chunks() > 0
    assert engine.store.count_dense_pending() == 0
