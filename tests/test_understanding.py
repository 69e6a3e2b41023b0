"""Understanding the question offline, with the bundled multilingual encoder: English questions over Arabic
articles, follow-ups, refusals, headings, and the encoder's own failure modes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.ingest import Indexer
from rag import embedding
from rag.encoder import PackedEncoder
from rag.engine import Sanad
from rag.extractive import is_heading
from rag.models import Answer, Turn
from rag.settings import AnswerSettings, EmbedSettings, Settings
from tests.conftest import SEEDS, index_seeds, read_seed

CAIRO_MEETING = "003_046bdc7566d0cd7e"
ONLINE_MEETING = "004_62f51f2fac3a5964"


def cited_docs(answer: Answer) -> set[str]:
    return {c.doc_id for c in answer.citations}


def assert_quotes_are_exact(answer: Answer) -> None:
    for c in answer.citations:
        assert read_seed(c.doc_id)[c.start : c.end] == c.quote


def test_the_chat_pages_english_example_is_answered_from_the_arabic_article(seeded_engine: Sanad) -> None:
    answer = seeded_engine.ask("Who attended the security meeting in Cairo?")
    assert answer.answerable and answer.language == "en"
    # The emergency meeting (003) and the mediators' meeting (000) were both security meetings in Cairo.
    assert cited_docs(answer) & {CAIRO_MEETING, "000_ddb8d80929f4d864"}
    assert answer.answer.startswith("The articles say (in Arabic): «")
    assert any(name in answer.answer for name in ("مصر وقطر وتركيا", "حسن رشاد", "كالين"))
    assert_quotes_are_exact(answer)


def test_an_english_count_question_gets_the_number_stated_in_english(seeded_engine: Sanad) -> None:
    answer = seeded_engine.ask("How many times did the Israeli army violate the ceasefire, according to Ghazi Hamad?")
    assert answer.answerable and ONLINE_MEETING in cited_docs(answer)
    english = answer.answer.split("»")[-1]  # what follows the quotes is Sanad's own English
    assert "900" in english
    assert_quotes_are_exact(answer)


@pytest.mark.parametrize("question", [
    "من شارك في الاجتماع الأمني الذي استضافته القاهرة؟",
    "ما الدور الذي ستقوم به الولايات المتحدة في تنفيذ المرحلة الثانية؟",
])
def test_no_heading_is_quoted_when_a_sentence_answers(seeded_engine: Sanad, question: str) -> None:
    answer = seeded_engine.ask(question)
    assert answer.answerable
    for c in answer.citations:
        start = c.text.find(c.quote)
        assert start >= 0 and not is_heading(c.text, start, start + len(c.quote)), c.quote


def test_a_table_is_quoted_with_its_caption_and_no_piece_of_a_headline_is_quoted(seeded_engine: Sanad) -> None:
    answer = seeded_engine.ask("What role is Qatar expected to play in the second phase?")
    assert answer.answerable and "قطر دعم إنساني وتنموي للقطاع" in answer.answer  # Qatar's row of the table
    assert answer.answer.count("قطر دعم إنساني وتنموي للقطاع") == 1  # the row is not quoted again on its own
    for c in answer.citations:
        # A headline repeated in the body, whole or a part of it, says nothing the question asks.
        assert c.quote.strip() not in c.title, c.quote
    assert_quotes_are_exact(answer)


def test_a_date_held_only_by_a_dateline_is_still_found(seeded_engine: Sanad) -> None:
    answer = seeded_engine.ask("في أي تاريخ عقد الاجتماع الطارئ في القاهرة؟")
    assert answer.answerable and "25 نوفمبر" in answer.answer


def test_a_follow_up_is_answered_from_the_previous_answers_article(seeded_engine: Sanad) -> None:
    first = "من ترأس اجتماع القاهرة الطارئ عن مصر؟"
    previous = seeded_engine.ask(first)
    assert previous.answerable and "حسن رشاد" in previous.answer
    history = [Turn(role="user", content=first),
               Turn(role="assistant", content=previous.answer, doc_ids=sorted(cited_docs(previous)))]
    answer = seeded_engine.ask("ومن مثل تركيا فيه؟", history=history)
    assert answer.answerable and "كالين" in answer.answer
    assert CAIRO_MEETING in cited_docs(answer)


def test_an_english_follow_up_is_answered_from_the_previous_answers_article(seeded_engine: Sanad) -> None:
    history = [Turn(role="user", content="Who chaired the emergency Cairo meeting for Egypt?"),
               Turn(role="assistant", content="The articles say (in Arabic): «بدايةً، ترأس اللواء حسن رشاد، رئيس جهاز "
                    "المخابرات العامة المصري، الاجتماع عن الجانب المصري.» [1]", doc_ids=[CAIRO_MEETING])]
    answer = seeded_engine.ask("And who represented Turkey there?", history=history)
    assert answer.answerable and "كالين" in answer.answer


def test_a_follow_up_from_a_client_that_sends_only_messages_finds_the_article_too(seeded_engine: Sanad) -> None:
    previous = seeded_engine.ask("من ترأس اجتماع القاهرة الطارئ عن مصر؟")
    history = [Turn(role="user", content="من ترأس اجتماع القاهرة الطارئ عن مصر؟"),
               Turn(role="assistant", content=previous.answer)]  # no stored citations, as over /v1/chat/completions
    assert "كالين" in seeded_engine.ask("ومن مثل تركيا فيه؟", history=history).answer


@pytest.mark.parametrize("question", [
    "كيف أخبز خبز العجين المخمر في البيت؟",
    "What is the capital of Australia?",
])
def test_questions_the_articles_do_not_touch_are_refused_in_either_language(seeded_engine: Sanad,
                                                                           question: str) -> None:
    answer = seeded_engine.ask(question)
    assert not answer.answerable and not answer.citations


# -- the encoder: cache and fallback ----------------------------------------------------------------------------


def test_reindexing_computes_no_vector_twice(tmp_path: Path) -> None:
    cache = tmp_path / "vectors.sqlite3"
    for run in ("first", "second"):
        settings = Settings.in_memory(tmp_path / run, embed=EmbedSettings(cache_path=cache))
        engine = Sanad.open(settings)
        try:
            index_seeds(engine, settings)
            assert engine.embedder is not None
            computed = engine.embedder.computed
        finally:
            engine.close()
        if run == "second":
            assert computed == 0  # a fresh store, the same texts: every vector came from the cache


@pytest.fixture
def cpu_without_avx2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(embedding, "_cpu_problem", lambda: "this CPU lacks AVX2, which the bundled encoder needs")
    yield


@pytest.fixture
def no_encoder_runs(cpu_without_avx2: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Neither the C engine (no AVX2) nor onnxruntime (it cannot run the graph here) can run the encoder."""

    def cannot(self: PackedEncoder, threads: int) -> None:
        raise RuntimeError("onnxruntime cannot run the encoder's graph here")

    monkeypatch.setattr(PackedEncoder, "_session", cannot)
    yield


def test_on_a_cpu_without_avx2_the_encoder_runs_on_onnxruntime_and_english_finds_arabic(
        tmp_path: Path, cpu_without_avx2: None, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.in_memory(tmp_path, embed=EmbedSettings(cache_path=tmp_path / "fresh.sqlite3"))
    engine = Sanad.open(settings)
    try:
        with caplog.at_level(logging.WARNING, logger="sanad"):
            index_seeds(engine, settings)
            answer = engine.ask("Who heads the Hamas delegation in the Cairo negotiations?")
        assert engine.store.count_dense_pending() == 0  # every chunk got its dense vector
    finally:
        engine.close()
    assert not [r for r in caplog.records if "AVX2" in r.getMessage()]
    assert answer.answerable and "خليل الحية" in answer.answer


def test_on_a_cpu_the_encoder_cannot_use_sanad_says_so_once_and_works_lexically(
        tmp_path: Path, no_encoder_runs: None, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.in_memory(tmp_path, embed=EmbedSettings(cache_path=tmp_path / "fresh.sqlite3"))
    engine = Sanad.open(settings)
    try:
        with caplog.at_level(logging.WARNING, logger="sanad"):
            summary = Indexer(engine.store, engine.encoder, engine.embedder, settings.index).index_paths([SEEDS])
            answers = [engine.ask("من يرأس وفد حركة حماس في مفاوضات القاهرة؟") for _ in range(3)]
    finally:
        engine.close()
    assert summary.documents == 5 and not summary.skipped
    assert all(a.answerable and "خليل الحية" in a.answer for a in answers)
    warnings = [r.getMessage() for r in caplog.records if "AVX2" in r.getMessage()]
    assert len([w for w in warnings if w.startswith("No dense vectors")]) == 1  # said once while indexing
    assert len([w for w in warnings if w.startswith("Dense retrieval is off")]) == 1  # and once while answering


@pytest.fixture
def hedging(seeded_engine: Sanad) -> Iterator[Sanad]:
    """The seeded engine with every answer the encoder judges counted as close to the refusal line."""
    kept = seeded_engine.extractive.settings
    seeded_engine.extractive.settings = kept.model_copy(update={"hedge_same": 1e6, "hedge_cross": 1e6})
    yield seeded_engine
    seeded_engine.extractive.settings = kept


def test_a_clear_answer_is_given_as_the_answer(seeded_engine: Sanad) -> None:
    answer = seeded_engine.ask("من ترأس الجانب المصري في الاجتماع الطارئ بالقاهرة؟")
    assert answer.answerable and answer.confident
    assert "حسن رشاد" in answer.answer and not answer.answer.startswith("قد لا تجيب")


def test_an_answer_close_to_the_refusal_line_is_offered_as_the_closest_the_articles_come(hedging: Sanad) -> None:
    arabic = hedging.ask("من ترأس الجانب المصري في الاجتماع الطارئ بالقاهرة؟")
    assert arabic.answerable and not arabic.confident
    assert arabic.answer.startswith("قد لا تجيب المقالات عن هذا السؤال مباشرة؛ أقرب ما ورد فيها: ")
    assert "حسن رشاد" in arabic.answer and arabic.citations  # still quoted and cited
    english = hedging.ask("Who attended the security meeting in Cairo?")
    assert not english.confident
    assert english.answer.startswith("The articles may not answer this directly; the closest they come (in Arabic): «")
    assert_quotes_are_exact(english)


def test_a_hedge_is_not_given_without_the_encoders_signals(tmp_path: Path) -> None:
    """Without the encoder the refusal margin is on another scale, so it is not read as closeness."""
    settings = Settings.in_memory(tmp_path, embed=EmbedSettings(backend="none"),
                                  answer=AnswerSettings(hedge_same=1e6, hedge_cross=1e6))
    engine = Sanad.open(settings)
    try:
        index_seeds(engine, settings)
        answer = engine.ask("من ترأس الجانب المصري في الاجتماع الطارئ بالقاهرة؟")
    finally:
        engine.close()
    assert answer.answerable and answer.confident
