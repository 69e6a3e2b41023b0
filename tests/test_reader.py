"""The reader, as the answerer uses it (``SANAD_ANSWER__READER``, on by default): its probability that a sentence
says the answer is weighed into the sentence's score, its logits join the refusal model, a follow-up is read as
made standalone and a question that stands alone on its own words, English questions over Arabic articles are
read only where it was fitted in, and a reader that fails leaves the answer to the signals.

The answerer's plumbing is driven by a fake reader with its weights set plainly (so that what it says decides);
the shipped reader (``rag/data/reader-cross-1.onnx``) is tested on the seeds at the fitted defaults, and
:class:`CrossReader`'s own plumbing on a tiny ONNX graph."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from index.ingest import Indexer
from rag.encoder import PackedEncoder
from rag.engine import Sanad
from rag.models import Turn
from rag.reader import CrossReader, load_reader, pair_ids
from rag.settings import Settings
from rag.text import fold
from tests.conftest import REFUSAL_AR, index_seeds

# Two sentences of one seed article (004): the first says when the ceasefire took effect, the second is about
# the same ceasefire and says something else.
SAYS = ("يأتي هذا الاجتماع في إطار الجهود المستمرة للبناء على اتفاق وقف إطلاق النار الذي دخل حيز التنفيذ في "
        "10 أكتوبر بين إسرائيل وحركة المقاومة الإسلامية (حماس).")
TOPICAL = ("وقد صرح ممثل حركة حماس غازي حمد بأن الجيش الإسرائيلي انتهك وقف إطلاق النار أكثر من 900 مرة، وأشارت "
           "السلطات المحلية إلى أن هذه الانتهاكات أدت إلى استشهاد ما يقرب من 440 شخصا وإصابة أكثر من 1200 آخرين "
           "خلال هذه الفترة.")


class FakeReader:
    """Says a sentence answers when it holds one of ``answers`` (folded), and records what it was asked."""

    name = "fake"

    def __init__(self, answers: list[str], fail: bool = False) -> None:
        self.answers = [fold(a) for a in answers]
        self.fail = fail
        self.asked: list[str] = []

    def score(self, question: str, sentences: list[str]) -> np.ndarray:
        self.asked.append(question)
        if self.fail:
            raise RuntimeError("the reader broke")
        return np.array([4.0 if any(a in fold(s) for a in self.answers) else -4.0 for s in sentences])


# The refusal model stacked on the signals' margin, here the reader's logit for the best sentence alone: what
# the fake reader says decides (weights: the signals' margin, then rag.extractive.READ_SIGNALS, then a bias).
ON_THE_READER = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def reading_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sanad]:
    settings = Settings.in_memory(tmp_path_factory.mktemp("reading"))
    settings.answer.reader = "none"  # the fake readers below stand in
    settings.answer.reader_weight = settings.answer.reader_weight_cross = 0.6
    settings.answer.refusal_read_same = settings.answer.refusal_read_cross = ON_THE_READER
    settings.answer.hedge_read_same = settings.answer.hedge_read_cross = 1.0
    engine = Sanad.open(settings)
    index_seeds(engine, settings)
    yield engine
    engine.close()


def use(engine: Sanad, reader: FakeReader) -> FakeReader:
    engine.extractive.reader = reader  # type: ignore[assignment]
    return reader


@pytest.mark.parametrize("question", ["متى دخل وقف إطلاق النار حيز التنفيذ؟", "When did the ceasefire take effect?"])
def test_the_sentence_the_reader_finds_answering_is_quoted_first(reading_engine: Sanad, question: str) -> None:
    use(reading_engine, FakeReader(["10 أكتوبر"]))
    answer = reading_engine.ask(question)
    assert answer.answerable and answer.confident and answer.reader == "fake"
    assert fold("10 أكتوبر") in fold(answer.citations[0].quote)


def test_what_the_reader_finds_unanswered_is_refused(reading_engine: Sanad) -> None:
    use(reading_engine, FakeReader([]))
    answer = reading_engine.ask("من يرأس وفد حماس في مفاوضات القاهرة؟")
    assert answer.answerable is False and answer.citations == [] and answer.answer == REFUSAL_AR


def test_only_sentences_the_reader_finds_answering_are_quoted_beside_the_best(reading_engine: Sanad) -> None:
    use(reading_engine, FakeReader(["مصر", "قطر", "تركيا"]))
    answer = reading_engine.ask("ما الدول الثلاث التي اجتمع رؤساء أجهزة مخابراتها في القاهرة؟")
    assert answer.answerable
    for c in answer.citations:
        assert any(fold(n) in fold(c.quote) for n in ("مصر", "قطر", "تركيا")), c.quote


def test_a_follow_up_is_read_made_standalone_and_a_new_question_on_its_own_words(reading_engine: Sanad) -> None:
    reader = use(reading_engine, FakeReader(["خليل الحية", "مساء أمس"]))
    first = "من يرأس وفد حماس في مفاوضات القاهرة؟"
    history = [Turn(role="user", content=first), Turn(role="assistant", content=reading_engine.ask(first).answer)]
    reader.asked.clear()
    follow = reading_engine.ask("ومتى وصل؟", history=history)
    assert follow.answerable and "وفد" in reader.asked[-1]  # read with the conversation's subject carried in
    reader.asked.clear()
    reading_engine.ask("Who won the 2022 World Cup?", history=history)
    assert reader.asked and all(q == "Who won the 2022 World Cup?" for q in reader.asked)


def test_a_reader_that_fails_leaves_the_answer_to_the_signals(reading_engine: Sanad) -> None:
    use(reading_engine, FakeReader([], fail=True))
    answer = reading_engine.ask("من يرأس وفد حماس في مفاوضات القاهرة؟")
    assert answer.answerable and "الحية" in answer.answer and answer.reader is None


def test_english_questions_over_arabic_articles_are_read_only_where_the_reader_was_fitted_in(
        reading_engine: Sanad) -> None:
    reader = use(reading_engine, FakeReader(["10 أكتوبر"]))
    a = reading_engine.settings.answer
    saved = a.reader_weight_cross, a.refusal_read_cross
    a.reader_weight_cross, a.refusal_read_cross = 0.0, []  # as fitted for reader-cross-1: it did not help there
    try:
        answer = reading_engine.ask("When did the ceasefire take effect?")
        assert reader.asked == [] and answer.reader is None  # no reading: today's answer, at no cost
        reading_engine.ask("متى دخل وقف إطلاق النار حيز التنفيذ؟")
        assert reader.asked  # an Arabic question is read
    finally:
        a.reader_weight_cross, a.refusal_read_cross = saved


def test_a_reader_that_cannot_be_loaded_is_reported_not_raised(tmp_path: Path) -> None:
    assert load_reader("none") is None
    assert load_reader(str(tmp_path / "missing.onnx")) is None


def _tiny_graph(path: Path, hidden: int) -> Path:
    """An ONNX graph with the reader's interface: the masked mean of the word rows, times a fixed vector."""
    onnx = pytest.importorskip("onnx", reason="onnx (dev extra) builds the tiny graph")
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [hidden, 1], rng.normal(size=hidden).astype(np.float32).tolist())
    axes1 = helper.make_tensor("axes1", TensorProto.INT64, [1], [1])
    axes2 = helper.make_tensor("axes2", TensorProto.INT64, [1], [2])
    nodes = [
        helper.make_node("Cast", ["mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axes2"], ["mask3"]),
        helper.make_node("Mul", ["embeds", "mask3"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "axes1"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["mask3", "axes1"], ["count"], keepdims=0),
        helper.make_node("Div", ["total", "count"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "w"], ["out"]),
        helper.make_node("Squeeze", ["out", "axes1"], ["logit"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("embeds", TensorProto.FLOAT, ["b", "t", hidden]),
         helper.make_tensor_value_info("mask", TensorProto.INT64, ["b", "t"])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["b"])],
        initializer=[w, axes1, axes2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.add(key="sanad_reader", value="tiny-1")
    onnx.save(model, str(path))
    return path


def test_the_cross_reader_reads_each_pair_alike_in_any_batch(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime (reader or dev extra) runs the reader")
    enc = PackedEncoder()
    reader = CrossReader(enc, _tiny_graph(tmp_path / "tiny.onnx", enc.config.hidden), threads=1)
    assert reader.name == "tiny-1"  # named in the graph, so answers never mix readers silently
    question = "متى دخل وقف إطلاق النار حيز التنفيذ؟"
    texts = [SAYS, TOPICAL, "القاهرة", SAYS + " " + TOPICAL * 6]  # the last one longer than a pair holds
    together = reader._read(question, texts, batch=4)  # unlike score(), never from the recent pairs
    alone = np.array([reader._read(question, [t], batch=1)[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-4)  # padding never leaks into a pair's score
    runs = []
    session_run = reader._session.run
    reader._session.run = lambda *a, **k: runs.append(1) or session_run(*a, **k)  # type: ignore[method-assign]
    first = reader.score(question, texts[:2])
    again = reader.score(question, [texts[1], texts[2], texts[0]])  # two pairs read before, one new
    assert len(runs) == 2 and np.allclose(again, [first[1], together[2], first[0]], atol=1e-4)
    ids = pair_ids(enc, question, texts[-1])
    assert len(ids) <= 160 and ids[0] == enc.tokenizer.bos and ids[-1] == enc.tokenizer.eos
    rows = enc.embed_rows(np.asarray(pair_ids(enc, question, SAYS)))
    assert abs(float(reader.score(question, [SAYS])[0]) - float(rows.mean(axis=0) @ _weights(tmp_path))) < 1e-3


def _weights(tmp_path: Path) -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(tmp_path / "tiny.onnx"))
    return numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "w"))[:, 0]


def test_the_exported_graph_scores_as_the_trained_model(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    from evals.reader.cross import build, export_onnx

    torch.manual_seed(0)
    enc = PackedEncoder()
    model = build(torch, enc, layers=2).eval()
    torch.nn.init.normal_(model.head.weight, std=0.05)
    exported = CrossReader(enc, export_onnx(torch, model, tmp_path / "two.onnx", "two", quantize=False), threads=1)
    ids = torch.tensor([pair_ids(enc, "متى؟", SAYS)])
    with torch.no_grad():
        expected = float(model(ids, torch.ones_like(ids, dtype=torch.bool))[0])
    assert exported.name == "two"
    assert abs(float(exported.score("متى؟", [SAYS])[0]) - expected) < 1e-3


# -- the shipped reader, at the fitted defaults ----------------------------------------------------------------


# XQuAD test-half articles (Arabic): the reader never trained on them, and nothing was fitted on them.
ARTICLES = ("Kenya", "Apollo_program", "Steam_engine", "Amazon_rainforest")


@pytest.fixture(scope="module")
def xquad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sanad, dict[str, str]]]:
    """Four XQuAD articles indexed with the default settings, and their questions' answers."""
    from evals.reader.data import SHARED

    data = json.loads((SHARED / "xquad" / "xquad.ar.json").read_text(encoding="utf-8"))["data"]
    folder = tmp_path_factory.mktemp("xquad")
    docs = folder / "articles.jsonl"
    answers, rows = {}, []
    for article in (a for a in data if a["title"] in ARTICLES):
        for i, p in enumerate(article["paragraphs"]):
            rows.append(json.dumps({"id": f"{article['title']}_{i}", "title": article["title"],
                                    "text": p["context"]}, ensure_ascii=False) + "\n")
            answers.update({q["question"]: q["answers"][0]["text"] for q in p["qas"]})
    docs.write_text("".join(rows), encoding="utf-8")
    settings = Settings.in_memory(folder / "data")
    engine = Sanad.open(settings)
    Indexer(engine.store, engine.encoder, engine.embedder, settings.index).index_paths([docs])
    yield engine, answers
    engine.close()


def test_the_shipped_reader_is_on_by_default_and_named_in_the_answers_it_judged(
        xquad: tuple[Sanad, dict[str, str]]) -> None:
    engine, _ = xquad
    assert engine.reader is not None and engine.reader.name == "reader-cross-1"
    assert engine.ask("كيف تكبح كينيا الفساد؟").reader == "reader-cross-1"
    # English over Arabic articles: not read (it did not help there on dev), and the answer says so.
    assert engine.ask("How does Kenya curb corruption?").reader is None


@pytest.mark.parametrize("question", [
    "كيف تكبح كينيا الفساد؟",
    "ما نوع الغلاف الجوي الذي ساعد في إشعال الحريق في جميع أنحاء المقصورة؟",
    "كم يبلغ عدد الاسطوانات الموجودة في محرك Energiprojekt AB؟",
    "ما نسبة الغابات المطرية التي تمثلها غابة الأمازون المطرية على الأرض.",
])
def test_the_shipped_reader_quotes_the_sentence_that_says_the_answer_first(
        xquad: tuple[Sanad, dict[str, str]], question: str) -> None:
    """Each question's paragraph has a sentence on its topic that does not say the answer and that the signals
    alone quoted first (measured when this test was written); the reader puts the one that says it first."""
    engine, answers = xquad
    answer = engine.ask(question)
    assert answer.answerable and answer.citations and answer.reader == "reader-cross-1"
    assert answers[question] in answer.citations[0].quote, answer.citations[0].quote


def test_the_reader_is_loaded_when_first_needed_not_to_index(tmp_path: Path) -> None:
    settings = Settings.in_memory(tmp_path)
    engine = Sanad.open(settings)
    try:
        index_seeds(engine, settings)
        assert engine.extractive.reader is None  # indexing never loaded it (0.5 s, 160 MB)
        assert engine.ask("من يرأس وفد حماس في مفاوضات القاهرة؟").reader == "reader-cross-1"
        assert engine.extractive.reader is not None and engine.reader is engine.extractive.reader
    finally:
        engine.close()


def test_hard_negatives_are_the_answerers_best_sentences_of_other_paragraphs(tmp_path: Path) -> None:
    """``sanad train-reader --hard-negatives N``: mined over the training paragraphs, kept beside the run."""
    import random

    from evals.reader.cross import training_pairs
    from evals.reader.data import ReadingItem
    from evals.reader.hard import mine
    from rag.sentences import answer_spans

    def item(qid: str, question: str, context: str, group: str) -> ReadingItem:
        return ReadingItem(qid, "ar", question, context, tuple(answer_spans(context)), frozenset({0}), group,
                           "test", "train")

    own = item("q1", "متى دخل وقف إطلاق النار حيز التنفيذ؟", SAYS + " " + TOPICAL, "a")
    other = item("q2", "كم مرة انتهك الجيش وقف إطلاق النار؟",
                 "اتفق الطرفان على وقف إطلاق النار بعد مفاوضات طويلة في القاهرة. وقال الوسطاء إن وقف إطلاق النار "
                 "صامد رغم الخروقات.", "b")
    path = tmp_path / "hard.json"
    hard = mine([own, other], 2, path)
    assert hard["q1"] and all(s not in own.context for s in hard["q1"])  # never its own paragraph's
    assert all(s in other.context for s in hard["q1"])
    assert mine([], 2, path) == hard  # a resumed run trains on the same negatives
    pairs = training_pairs([own, other], random.Random(0), hard=hard)
    assert {(own.question, s, 0.0) for s in hard["q1"]} <= set(pairs)


def test_the_reader_is_handed_on_in_arrival_order() -> None:
    """Questions waiting for the reader get it first come, first served (a plain lock let later ones jump ahead)."""
    import threading
    import time

    from rag.reader import TurnLock

    turns = TurnLock()
    order: list[int] = []

    def wait_then_read(i: int) -> None:
        with turns:
            order.append(i)

    with turns:  # one question reading; five arrive, one after another
        threads = []
        for i in range(5):
            t = threading.Thread(target=wait_then_read, args=(i,))
            t.start()
            threads.append(t)
            deadline = time.monotonic() + 10
            while turns.waiting < i + 1 and time.monotonic() < deadline:
                time.sleep(0.001)
            assert turns.waiting == i + 1
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2, 3, 4]
    with turns:  # free again
        pass


@pytest.mark.parametrize("retrieved_as", [1, 0])
def test_an_llm_is_shown_first_the_passage_the_reader_finds_answering(tmp_path: Path, retrieved_as: int) -> None:
    """The retrieved passages are re-ranked by reading: the one holding the sentence the reader finds answering is
    passage [1] of the LLM's prompt, wherever retrieval put it."""
    from rag.settings import LLMSettings
    from tests.fakes.openai_server import run_fake_openai
    from tests.test_llm_path import chat_messages, prompt_passages

    question = "متى دخل وقف إطلاق النار حيز التنفيذ؟"
    with run_fake_openai() as (fake, url):
        llm = LLMSettings(base_url=url, api_key="x", model="fake-model", timeout=2)
        settings = Settings.in_memory(tmp_path, llm=llm)
        settings.answer.reader, settings.answer.reader_weight = "none", 0.6
        engine = Sanad.open(settings)
        try:
            index_seeds(engine, settings)
            retrieved, _ = engine.retrieve(question)
            answering = retrieved[retrieved_as]
            use(engine, FakeReader([answering.text[s:e] for s, e in answering.sentences]))
            fake.reply = lambda messages: "جواب [1]."
            engine.ask(question)
            shown = prompt_passages(chat_messages(fake))
            assert len(shown) == len(retrieved)
            assert answering.text.strip()[:80] in shown[1]
            assert all(p.text.strip()[:80] in "".join(shown.values()) for p in retrieved)  # re-ranked, none lost
        finally:
            engine.close()


def test_contrast_questions_swap_a_word_the_answer_holds_for_one_of_its_article_it_lacks() -> None:
    """``sanad train-reader --swapped N``: the answer's sentence no longer says what the changed question asks."""
    import random

    from evals.reader.cross import contrast_questions, training_pairs
    from evals.reader.data import ReadingItem
    from rag.sentences import answer_spans

    question = "من يرأس وفد حركة حماس في مفاوضات القاهرة؟"
    sentence = "ويرأس وفد حركة حماس في مفاوضات القاهرة خليل الحية."
    article = "وصل الوفد الإسرائيلي إلى القاهرة مساء أمس لبحث المرحلة الثانية."
    rng = random.Random(0)
    swapped = contrast_questions(question, sentence, article, rng, 20)
    assert swapped and all(q != question for q in swapped)
    for q in swapped:
        new = set(q.rstrip("؟").split()) - set(question.rstrip("؟").split())
        gone = set(question.rstrip("؟").split()) - set(q.rstrip("؟").split())
        assert len(new) == 1 and len(gone) == 1  # one word changed
        assert gone.pop() in sentence and (w := new.pop()) in article and w not in sentence
    assert contrast_questions("Who heads the delegation?", sentence, article, rng, 3) == []  # nothing shared

    def item(qid: str, lang: str, q: str, context: str) -> ReadingItem:
        return ReadingItem(qid, lang, q, context, tuple(answer_spans(context)), frozenset({0}), "a", "test", "train")

    items = [item("q1", "ar", question, sentence + " " + article), item("q2", "ar", "متى وصل الوفد؟", article),
             item("q3", "en", "Who heads the Hamas delegation?", sentence + " " + article)]
    pairs = training_pairs(items, random.Random(0), swapped=2)
    contrast = [(q, s, y) for q, s, y in pairs if q not in {it.question for it in items}]
    assert contrast and all(y == 0.0 for _, _, y in contrast)
    for q, s, _ in contrast:  # each against its own question's answer sentence
        assert s == (article if q.startswith("متى") else sentence)
    assert not any(q.startswith("Who") for q, _, _ in contrast)  # English questions over Arabic: none


def test_the_readers_own_refusal_line_refuses_what_it_finds_unanswered_when_set(tmp_path: Path) -> None:
    """``read_floor_*`` (fitted and reported by evals.reader.fit; not set by default): under it the reader's
    finding decides, whatever the signals say; an English question over Arabic articles is read for it."""
    settings = Settings.in_memory(tmp_path)
    settings.answer.reader = "none"
    engine = Sanad.open(settings)
    try:
        index_seeds(engine, settings)
        question, english = "من يرأس وفد حماس في مفاوضات القاهرة؟", "Who heads the Hamas delegation in Cairo?"
        reader = use(engine, FakeReader([]))  # finds nothing answering (logit -4 for every sentence)
        assert engine.ask(question).answerable and engine.ask(english).answerable  # the signals answer
        assert reader.asked == [question]  # English over Arabic: not read without a line of its own
        settings.answer.read_floor_same = settings.answer.read_floor_cross = -3.0
        for q in (question, english):
            answer = engine.ask(q)
            assert answer.answerable is False and answer.citations == [], q
        use(engine, FakeReader(["الحية"]))  # finds the sentence naming him: answered again
        assert engine.ask(question).answerable and engine.ask(english).answerable
    finally:
        engine.close()
