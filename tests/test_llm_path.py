"""The LLM answerer against a real OpenAI-compatible fake server: citations checked, failures degrade."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from index.ingest import Indexer
from rag.engine import Event, Sanad
from rag.models import Answer
from rag.sentences import sentence_spans
from rag.settings import EmbedSettings, LLMSettings, RetrievalSettings, Settings
from tests.conftest import REFUSAL_AR, SEEDS, index_seeds, read_seed
from tests.fakes.openai_server import FakeOpenAI, run_fake_openai

GHAZI = "004_62f51f2fac3a5964"
QUESTION = "كم مرة انتهك الجيش الإسرائيلي وقف إطلاق النار بحسب غازي حمد؟"
CLAIM = "صرح غازي حمد بأن الجيش الإسرائيلي انتهك وقف إطلاق النار أكثر من 900 مرة"

Messages = list[dict[str, Any]]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeOpenAI, str]]:
    with run_fake_openai() as running:
        yield running


@pytest.fixture
def fake(server: tuple[FakeOpenAI, str]) -> Iterator[FakeOpenAI]:
    server[0].reset()
    server[0].hang_seconds = 5
    yield server[0]
    server[0].reset()


@pytest.fixture(scope="module")
def llm_engine(server: tuple[FakeOpenAI, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sanad]:
    llm = LLMSettings(base_url=server[1], api_key="x", model="fake-model", timeout=2)
    settings = Settings.in_memory(tmp_path_factory.mktemp("llm"), llm=llm)
    engine = Sanad.open(settings)
    index_seeds(engine, settings)
    yield engine
    engine.close()


def chat_messages(fake: FakeOpenAI) -> Messages:
    bodies = fake.bodies("/chat/completions")
    assert bodies, "the LLM was not asked"
    return bodies[-1]["messages"]


def prompt_passages(messages: Messages) -> dict[int, str]:
    """The numbered passages exactly as the model was shown them."""
    user = messages[-1]["content"]
    body = user.split("Passages:\n\n", 1)[1].rsplit("\n\nQuestion: ", 1)[0]
    heads = list(re.finditer(r"(?:^|\n\n)\[(\d+)\] [^\n]*\n", body))
    return {int(m.group(1)): body[m.end() : heads[i + 1].start() if i + 1 < len(heads) else len(body)]
            for i, m in enumerate(heads)}


def assert_quote_is_a_sentence_of(citation: Any) -> None:
    assert read_seed(citation.doc_id)[citation.start : citation.end] == citation.quote
    assert citation.quote in [citation.text[s:e] for s, e in sentence_spans(citation.text)]


def final(events: list[Event]) -> Answer:
    """The answer event closes what a client sees (only the call's timings follow it)."""
    shown = [e for e in events if e.kind != "timings"]
    assert shown[-1].kind == "answer" and events[-1].kind == "timings"
    return shown[-1].data


def test_reply_citing_1_is_tied_to_the_first_passage_of_the_prompt(llm_engine: Sanad, fake: FakeOpenAI) -> None:
    fake.reply = lambda messages: f"{CLAIM} [1]."
    answer = llm_engine.ask(QUESTION)
    assert answer.answerer == "llm" and answer.answerable and not answer.degraded
    assert answer.answer == f"{CLAIM} [1]."
    [citation] = answer.citations
    assert citation.n == 1
    assert citation.text == prompt_passages(chat_messages(fake))[1]
    assert citation.doc_id == GHAZI
    assert_quote_is_a_sentence_of(citation)
    assert "900" in citation.quote  # the sentence that supports the claim, not just the passage's first one


def test_prompt_numbers_the_passages_and_asks_for_the_question_language(llm_engine: Sanad, fake: FakeOpenAI) -> None:
    fake.reply = lambda messages: f"{CLAIM} [1]."
    llm_engine.ask(QUESTION)
    messages = chat_messages(fake)
    passages = prompt_passages(messages)
    retrieved = llm_engine.search(QUESTION)
    assert list(passages) == list(range(1, len(retrieved) + 1))
    # Every retrieved passage, whole; in reading order (tests/test_reader.py), the one holding the claim first.
    assert sorted(passages.values()) == sorted(p.text for p in retrieved)
    assert "900" in passages[1]
    assert QUESTION in messages[-1]["content"]
    system = messages[0]["content"]
    assert "Answer in Arabic" in system and "NO_ANSWER" in system and "[1]" in system


def test_english_question_goes_to_the_model_with_an_english_instruction(llm_engine: Sanad, fake: FakeOpenAI) -> None:
    fake.reply = lambda messages: "Lavrov said the further implementation of Trump's plan looks doubtful [1]."
    answer = llm_engine.ask("What did Lavrov say about Trump's plan?")
    assert "Answer in English" in chat_messages(fake)[0]["content"]
    assert answer.answerer == "llm" and answer.language == "en"
    assert answer.answer.startswith("Lavrov said")
    assert answer.citations[0].doc_id == GHAZI
    assert_quote_is_a_sentence_of(answer.citations[0])


def test_marker_after_the_full_stop_quotes_the_sentence_it_follows(llm_engine: Sanad, fake: FakeOpenAI) -> None:
    def reply(messages: Messages) -> str:
        passages = prompt_passages(messages)
        ghazi = next(k for k, text in passages.items() if "900 مرة" in text)
        lavrov = next(k for k, text in passages.items() if "لافروف" in text)
        return f"قال لافروف إن تنفيذ خطة ترامب مشكوك فيه. [{lavrov}] {CLAIM}. [{ghazi}]"

    fake.reply = reply
    answer = llm_engine.ask(QUESTION)
    assert answer.answerer == "llm"
    passages = prompt_passages(chat_messages(fake))
    by_n = {c.n: c for c in answer.citations}
    ghazi = next(k for k, text in passages.items() if "900 مرة" in text)
    lavrov = next(k for k, text in passages.items() if "لافروف" in text)
    for c in answer.citations:
        assert_quote_is_a_sentence_of(c)
    if ghazi != lavrov:
        assert "900 مرة" in by_n[ghazi].quote
        assert "لافروف" in by_n[lavrov].quote
    else:  # both claims cite one passage: its quote is one of the two supporting sentences
        assert "900 مرة" in by_n[ghazi].quote or "لافروف" in by_n[ghazi].quote


def test_out_of_range_markers_are_dropped_valid_ones_kept(llm_engine: Sanad, fake: FakeOpenAI) -> None:
    fake.reply = lambda messages: "انتهك الجيش الإسرائيلي الهدنة [7] مرات كثيرة [0] بحسب حماس [2]."
    answer = llm_engine.ask(QUESTION)
    assert answer.answerer == "llm"
    assert re.findall(r"\[\d+\]", answer.answer) == ["[2]"]
    assert [c.n for c in answer.citations] == [2]
    assert answer.citations[0].text == prompt_passages(chat_messages(fake))[2]
    assert_quote_is_a_sentence_of(answer.citations[0])


def test_reply_without_markers_gets_one_where_a_passage_supports_it(llm_engine: Sanad, fake: FakeOpenAI) -> None:
    fake.reply = lambda messages: f"{CLAIM}."
    answer = llm_engine.ask(QUESTION)
    assert answer.answerer == "llm" and not answer.degraded
    [marker] = re.findall(r"\[(\d+)\]", answer.answer)
    [citation] = answer.citations
    assert citation.n == int(marker)
    assert citation.doc_id == GHAZI and "900" in citation.quote
    assert citation.text == prompt_passages(chat_messages(fake))[int(marker)]


def test_unsupported_reply_without_markers_falls_back_to_the_offline_answer(llm_engine: Sanad,
                                                                            fake: FakeOpenAI) -> None:
    fake.reply = lambda messages: "The weather in Paris is lovely this week."
    answer = llm_engine.ask(QUESTION)
    assert "Paris" not in answer.answer
    assert answer.answerer == "extractive" and answer.degraded
    assert "900" in answer.answer and answer.citations[0].doc_id == GHAZI


def test_no_answer_becomes_a_refusal(llm_engine: Sanad, fake: FakeOpenAI) -> None:
    fake.reply = lambda messages: "NO_ANSWER"
    answer = llm_engine.ask(QUESTION)
    assert answer.answerable is False and answer.citations == []
    assert answer.answer == REFUSAL_AR and answer.answerer == "llm"


def test_streamed_no_answer_never_shows_the_sentinel(llm_engine: Sanad, fake: FakeOpenAI) -> None:
    fake.reply = lambda messages: "NO_ANSWER"
    events = list(llm_engine.stream(QUESTION))
    deltas = [e.data for e in events if e.kind == "delta"]
    assert not any("NO_ANSWER" in d for d in deltas)
    assert "".join(deltas) == REFUSAL_AR
    assert final(events).answerable is False and final(events).citations == []


def test_stream_yields_passages_then_deltas_then_the_answer(llm_engine: Sanad, fake: FakeOpenAI) -> None:
    fake.reply = lambda messages: f"بحسب غازي حمد، {CLAIM} [1]، وأدت الانتهاكات إلى استشهاد 440 شخصا [1]."
    events = list(llm_engine.stream(QUESTION))
    kinds = [e.kind for e in events]
    assert kinds[0] == "passages" and kinds[-2:] == ["answer", "timings"]
    assert set(kinds[1:-2]) == {"delta"} and len(kinds) > 6  # the text really arrives in pieces
    passages = prompt_passages(chat_messages(fake))
    assert [c.text for c in events[0].data] == list(passages.values())
    answer = final(events)
    assert answer.answerer == "llm"
    assert "".join(e.data for e in events if e.kind == "delta") == answer.answer
    assert [c.n for c in answer.citations] == [1]


@pytest.mark.parametrize("mode", ["error500", "hang", "malformed", "drop"])
def test_failing_endpoint_degrades_to_the_offline_answer(llm_engine: Sanad, fake: FakeOpenAI, mode: str) -> None:
    fake.reply = lambda messages: f"{CLAIM} [1]."
    fake.mode = mode  # type: ignore[assignment]
    answer = llm_engine.ask(QUESTION)
    assert answer.degraded and answer.answerer == "extractive"
    assert answer.answerable and "900" in answer.answer
    assert answer.citations[0].doc_id == GHAZI


@pytest.mark.parametrize("mode", ["error500", "hang", "malformed", "drop"])
def test_failing_stream_degrades_and_the_shown_text_matches_the_answer(llm_engine: Sanad, fake: FakeOpenAI,
                                                                       mode: str) -> None:
    fake.reply = lambda messages: f"{CLAIM} [1]."
    fake.mode = mode  # type: ignore[assignment]
    events = list(llm_engine.stream(QUESTION))
    answer = final(events)
    assert answer.degraded and answer.answerer == "extractive" and "900" in answer.answer
    # What a client shows: the text after the last reset, read against the last passages sent.
    last_reset = max((i for i, e in enumerate(events) if e.kind == "reset"), default=-1)
    shown = "".join(e.data for e in events[last_reset + 1 :] if e.kind == "delta")
    assert shown == answer.answer
    passages = [e.data for e in events if e.kind == "passages"]
    assert passages and passages[-1] == answer.citations


def test_embeddings_endpoint_indexes_and_retrieves_through_hybrid_search(
    fake: FakeOpenAI, server: tuple[FakeOpenAI, str], tmp_path: Path
) -> None:
    embed = EmbedSettings(backend="openai", base_url=server[1], model="fake-embed", dimension=64)
    # The fake's vectors are hashed trigrams, not meaning: rank fusion keeps the lexical list in charge. (The
    # default score formula was measured with the bundled encoder's cosines.)
    settings = Settings.in_memory(tmp_path, embed=embed, retrieval=RetrievalSettings(fusion="rrf"))
    engine = Sanad.open(settings)
    try:
        summary = Indexer(engine.store, engine.encoder, engine.embedder, settings.index).index_paths([SEEDS])
        assert summary.documents == 5
        embedded = [t for b in fake.bodies("/embeddings") for t in ([b["input"]] if isinstance(b["input"], str)
                                                                    else b["input"])]
        # Each chunk and each of its sentences (the answerer reads sentence vectors), each once.
        points = engine.store.client.scroll(engine.store.chunks, limit=1000)[0]
        texts = [p.payload["text"] for p in points]  # type: ignore[index]
        sentences = [t[a:b] for p in points for t in [p.payload["text"]] for a, b in p.payload["sentences"]]  # type: ignore[index]
        sent = {t.replace("\n", " ") for t in [*texts, *sentences]}  # llama-index sends newlines as spaces
        assert len(points) == summary.chunks and set(embedded) == sent
        assert len(embedded) == len(set(embedded))
        assert all(b["model"] == "fake-embed" for b in fake.bodies("/embeddings"))

        point = engine.store.client.scroll(engine.store.chunks, limit=1, with_vectors=True)[0][0]
        assert len(point.vector["dense"]) == 64 and point.vector["lexical"].indices

        dense_used: list[bool] = []
        search = engine.store.search

        def spy(sparse, dense, *args, **kwargs):  # type: ignore[no-untyped-def]
            dense_used.append(dense is not None)
            return search(sparse, dense, *args, **kwargs)

        engine.store.search = spy  # type: ignore[method-assign]
        answer = engine.ask(QUESTION)
        assert dense_used == [True]
        assert any(b["input"] in (QUESTION, [QUESTION]) for b in fake.bodies("/embeddings"))
        assert answer.answerable and answer.citations[0].doc_id == GHAZI and "900" in answer.answer
        hayya = engine.ask("من يرأس وفد حماس في مفاوضات القاهرة؟")
        assert "خليل الحية" in hayya.answer and hayya.citations[0].doc_id == "002_823df25e19dc7a4e"
    finally:
        engine.close()
