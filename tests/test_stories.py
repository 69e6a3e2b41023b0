"""Syndicated stories: one wire story in several outlets is answered once, naming the others in ``also_in``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import pytest

from index.ingest import Indexer
from index.stories import shingles, signature
from rag.engine import Sanad
from rag.models import Article
from rag.settings import Settings

WIRE = (
    "أعلن الدفاع المدني في منطقة جازان إخماد حريق اندلع في مستودع للأخشاب بحي الشاطئ فجر اليوم دون تسجيل إصابات. "
    "وقال المتحدث الرسمي للدفاع المدني إن فرق الإطفاء باشرت الحريق بعد تلقي البلاغ بدقائق وتمكنت من السيطرة عليه "
    "خلال ساعتين، مشيرا إلى أن أسباب الحريق لا تزال قيد التحقيق. وأضاف أن المستودع يقع في منطقة سكنية وأن الفرق "
    "منعت امتداد النيران إلى المباني المجاورة."
)
EDITED = ("جازان – واس: " + WIRE.replace("فجر اليوم", "صباح اليوم").replace("دون تسجيل إصابات", "ولم تسجل أي إصابات")
          + " وشارك في العملية أكثر من عشرين رجل إطفاء.")
OTHER = ("افتتح أمير المنطقة الشرقية معرض الكتاب السنوي في الدمام بمشاركة أكثر من مئتي دار نشر من داخل "
         "المملكة وخارجها، ويستمر المعرض عشرة أيام ويتضمن ندوات وأمسيات شعرية وورش عمل للأطفال.")


def article(doc_id: str, text: str, source: str, day: int) -> Article:
    return Article(id=doc_id, title="حريق في مستودع بجازان" if text != OTHER else "معرض الكتاب في الدمام",
                   text=text, source=source, url=f"https://{source}.example/{doc_id}", date=date(2015, 7, day))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sanad]:
    settings = Settings.in_memory(tmp_path_factory.mktemp("stories"))
    eng = Sanad.open(settings)
    Indexer(eng.store, eng.encoder, eng.embedder, settings.index).index_articles([
        article("spa-fire", WIRE, "spa", 22),
        article("okaz-fire", WIRE, "okaz", 22),  # the same wire text
        article("okaz-fire-2", WIRE, "okaz", 22),  # twice in one outlet
        article("riyadh-fire", EDITED, "alriyadh", 23),  # lightly edited
        article("sharq-books", OTHER, "alsharq", 23),
    ])
    yield eng
    eng.close()


def test_copies_and_light_edits_are_one_story_and_other_news_is_not(engine: Sanad) -> None:
    stories = {r["doc_id"]: r["story_id"] for r in engine.store.list_documents()}
    fire = {stories[d] for d in ("spa-fire", "okaz-fire", "okaz-fire-2", "riyadh-fire")}
    assert len(fire) == 1
    assert stories["sharq-books"] not in fire
    sig_a, sig_b = signature(WIRE), signature(EDITED)
    assert sig_a is not None and sig_b is not None and 0.7 <= sig_a.jaccard(sig_b) < 1.0
    assert len(shingles(WIRE)) > 20


@pytest.mark.parametrize("question", ["كم استغرقت فرق الإطفاء للسيطرة على حريق المستودع في جازان؟",
                                      "How long did the firefighters take to control the warehouse fire in Jazan?"])
def test_a_syndicated_story_is_answered_once_with_the_other_outlets(engine: Sanad, question: str) -> None:
    answer = engine.ask(question)
    assert answer.answerable, answer.answer
    fire_docs = {"spa-fire", "okaz-fire", "okaz-fire-2", "riyadh-fire"}
    cited = {c.doc_id for c in answer.citations}
    assert len(cited & fire_docs) == 1, cited  # one copy quoted, not four
    quotes = [c.quote for c in answer.citations]
    assert len(quotes) == len(set(quotes))  # the same sentence is never cited twice
    c = next(c for c in answer.citations if c.doc_id in fire_docs)
    assert "ساعتين" in c.quote
    also = {a.doc_id: a for a in c.also_in}
    assert set(also) == fire_docs - {c.doc_id}
    assert {a.source for a in also.values()} <= {"spa", "okaz", "alriyadh"}
    for a in also.values():
        assert a.url == f"https://{a.source}.example/{a.doc_id}" and a.date and a.title


def test_passages_hold_one_copy_per_story(engine: Sanad) -> None:
    passages = engine.search("حريق مستودع الأخشاب في جازان الدفاع المدني", top_k=5)
    fire = [p for p in passages if p.doc_id.endswith("fire") or p.doc_id == "okaz-fire-2"]
    assert len({p.doc_id for p in fire}) == 1


def test_equal_scores_go_to_the_newer_article(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = Settings.in_memory(tmp_path_factory.mktemp("ties"), index={"story_threshold": 1.0})
    eng = Sanad.open(settings)
    try:
        # Identical text, so identical scores (and one story, even with exact copies only): the newer one stands
        # for it.
        Indexer(eng.store, eng.encoder, eng.embedder, settings.index).index_articles([
            article("old-fire", WIRE, "spa", 21), article("new-fire", WIRE, "okaz", 24)])
        [first, *_] = eng.search("حريق مستودع الأخشاب في جازان")
        assert first.doc_id == "new-fire"
    finally:
        eng.close()


def test_every_sources_block_names_the_other_outlets(engine: Sanad) -> None:
    from service.slack.format import render_answer
    from service.sources import sources_block

    answer = engine.ask("كم استغرقت فرق الإطفاء للسيطرة على حريق المستودع في جازان؟")
    block = sources_block(answer)  # the OpenAI-compatible content
    assert "ونشرته أيضًا: " in block
    cited = next(c for c in answer.citations if c.also_in)
    for a in cited.also_in:
        assert a.source in block
    slack = json.dumps([m.payload() for m in render_answer(answer, "a1")], ensure_ascii=False)
    assert "ونشرته أيضًا" in slack and all(a.source in slack for a in cited.also_in)


def test_a_copy_taken_by_another_process_joins_the_story_the_first_one_indexed(
        tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two service processes on one Qdrant server each take uploads: each one's story index reads what the other
    indexed meanwhile, so a copy joins the story wherever it lands."""
    import index.stories

    monkeypatch.setattr(index.stories, "REFRESH_SECONDS", 0.0)
    settings = Settings.in_memory(tmp_path_factory.mktemp("two"))
    eng = Sanad.open(settings)
    try:
        first = Indexer(eng.store, eng.encoder, eng.embedder, settings.index)
        second = Indexer(eng.store, eng.encoder, eng.embedder, settings.index)  # its own story index
        second.index_articles([article("sharq-books", OTHER, "alsharq", 23)])  # loaded before the wire story
        first.index_articles([article("spa-fire", WIRE, "spa", 22)])
        second.index_articles([article("okaz-fire", WIRE, "okaz", 22)])
        stories = {r["doc_id"]: r["story_id"] for r in eng.store.list_documents()}
        assert stories["okaz-fire"] == stories["spa-fire"] != stories["sharq-books"]
    finally:
        eng.close()
