"""Bad input, generated: the HTTP API from its own OpenAPI schema (schemathesis), and the text analysis
(hypothesis: any Unicode in). Nothing a client can send gives a server error; no text crashes analysis.

Not repeated here: the sentence splitter and chunker on any text (tests/test_chunking.py) and the
analyzer's behaviour on real words (tests/test_text.py).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.python import asgi as schemathesis_asgi

from index.chunker import Chunker
from rag.citations import MarkerChecker, StreamTidy, tidy
from rag.engine import Sanad
from rag.lexical import LexicalEncoder, char_grams
from rag.questions import split_compound
from rag.sentences import sentence_spans
from rag.settings import IndexSettings, ServiceSettings, Settings
from rag.text import Analyzer, clean, detect_language, fold
from rag.translit import arabic_skeleton, latin_skeleton, name_skeletons
from service.app import create_app
from tests.conftest import examples, index_seeds

# -- the HTTP API from its OpenAPI schema -------------------------------------------------------------------------


def _fuzz_settings(data_dir: Path) -> Settings:
    # Auth off, no rate limit: every generated request reaches the route. Small limits so that the
    # generator reaches them too.
    return Settings.in_memory(data_dir, service=ServiceSettings(rate_limit_per_minute=0, max_question_chars=300,
                                                                max_body_bytes=64 * 1024))


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    settings = _fuzz_settings(tmp_path_factory.mktemp("fuzz"))
    engine = Sanad.open(settings)
    index_seeds(engine, settings)
    try:
        yield create_app(settings, engine)
    finally:
        schemathesis_asgi.shutdown_lifespans()  # the app's lifespan, started by schemathesis' ASGI client
        engine.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_app: FastAPI) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """(path, method, mode) for every operation, from the schema of an app that is built but not started;
    invalid data only where an operation takes some input (parameters or a body)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = create_app(_fuzz_settings(Path(tmp))).openapi()
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            out.append((path, method, GenerationMode.POSITIVE))
            if op.get("parameters") or op.get("requestBody"):
                out.append((path, method, GenerationMode.NEGATIVE))
    return out


OPERATIONS = _operations()
# Examples per operation and mode; raise it for a longer hunt: FUZZ_EXAMPLES=1000 pytest tests/test_fuzz.py
API_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", str(examples(30))))
_STRATEGIES: dict[tuple[str, str, GenerationMode], Any] = {}


# schemathesis' own pytest loader (schemathesis.pytest.from_fixture) does not run under pytest 9 (it sets
# ``Function._nodeid``, gone in pytest 9), so its case strategies are drawn here, operation by operation.
@pytest.mark.parametrize(("path", "method", "mode"), OPERATIONS,
                         ids=[f"{m.upper()} {p} {'valid' if g == GenerationMode.POSITIVE else 'invalid'}"
                              for p, m, g in OPERATIONS])
@settings(max_examples=API_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_request_built_from_the_schema_gets_a_server_error(api_schema: Any, path: str, method: str,
                                                             mode: GenerationMode, data: st.DataObject) -> None:
    """Every operation, with data valid for its schema and data that breaks it (wrong types, missing or
    extra fields, out-of-range values): never a 5xx, and every error in the one error shape."""
    key = (path, method, mode)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = api_schema[path][method].as_strategy(generation_mode=mode)
    case = data.draw(_STRATEGIES[key])
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: " \
                                       f"{response.text[:500]}\nbody: {str(case.body)[:500]}"
    if response.status_code >= 400 and path.startswith("/v1/"):
        error = response.json()["error"]  # the one error shape
        assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]


# JSON can carry what UTF-8 cannot: lone surrogates (as \ud800 escapes). Schemathesis only generates
# encodable text, so they are sent here, in every string field of every JSON body.
_LONE_SURROGATE = "\\ud800"
_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat", {"question": "x", "session_id": "s", "filters": {"doc_ids": ["x"]}}),
    ("/v1/search", {"query": "x", "filters": {"doc_ids": ["x"]}}),
    ("/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "x"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}),
    ("/v1/documents", {"id": "x", "title": "x", "text": "x y z.", "source": "x", "url": "x"}),
]


def _string_paths(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(obj, str):
        yield path
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _string_paths(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _string_paths(v, (*path, i))


def _with_surrogate(obj: Any, path: tuple[Any, ...], marker: str) -> Any:
    if not path:
        return obj + marker
    copy = json.loads(json.dumps(obj))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = target[path[-1]] + marker
    return copy


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = _fuzz_settings(tmp_path_factory.mktemp("surrogates"))
    engine = Sanad.open(settings)
    index_seeds(engine, settings)
    try:
        with TestClient(create_app(settings, engine), raise_server_exceptions=False) as client:
            yield client
    finally:
        engine.close()


@pytest.mark.parametrize(("route", "body"), _BODIES, ids=[f"{r}:{i}" for i, (r, _) in enumerate(_BODIES)])
def test_lone_surrogates_in_any_string_field_are_a_client_error(fuzz_client: TestClient, route: str,
                                                                 body: dict[str, Any]) -> None:
    for path in _string_paths(body):
        marker = "@@SURROGATE@@"
        raw = json.dumps(_with_surrogate(body, path, marker)).replace(marker, _LONE_SURROGATE)
        r = fuzz_client.post(route, content=raw.encode(), headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, f"{route} {'.'.join(map(str, path))}: {r.status_code} {r.text[:300]}"
        assert r.json()["error"]["message"]
    assert fuzz_client.get("/v1/sessions").status_code == 200  # nothing unreadable was stored
    assert fuzz_client.get("/v1/documents").status_code == 200


# -- the analyzer, the lexical encoder, transliteration skeletons -------------------------------------------------

_ARABIC_SOUP = st.text(
    alphabet=st.sampled_from(list("ابتثجحخدذرزسشصضطظعغفقكلمنهوي ءأإآؤئةىٱـ ًٌٍَُِّْٰ٠١٢٣٤٥٦٧٨٩۰۱۲؟؛،.!\n\t«»")
                             + ["\u200c", "\u200f", "\ufeff", "\u0610", "\u06d6", "ﻻ", "ﷲ", "ﺍ"]),
    max_size=300)
_LATIN_NAMES = st.text(alphabet=st.sampled_from(list("AaBbCcDdHhKkQqShThZz'’s.,;:!?\"()[] ")), max_size=120)
ANY_TEXT = st.one_of(st.text(max_size=300), _ARABIC_SOUP, _LATIN_NAMES,
                     st.text(alphabet=st.characters(codec="utf-8"), max_size=300))


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer()


@pytest.fixture(scope="module")
def encoder(analyzer: Analyzer) -> LexicalEncoder:
    return LexicalEncoder(analyzer, gram_weight=0.2)


def _finite_sparse(vector: Any) -> None:
    assert len(vector.indices) == len(vector.values) == len(set(vector.indices))
    assert all(isinstance(i, int) and 0 <= i < 2**31 for i in vector.indices)
    assert all(math.isfinite(v) and v > 0 for v in vector.values)


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ANY_TEXT)
@example(text="")
@example(text="\u0640\u0640\u064b")  # tatweel and a diacritic only: nothing left after cleaning
@example(text="ﷺ ﷲ ﻻ")  # presentation forms that NFKC expands into several letters
@example(text="٠٠٠ 007 " + "9" * 5000)  # digits only, and more digits than int() takes from a string
@example(text="والالالالالالالال فالمفاوضين")
def test_analysis_of_any_text_never_crashes(analyzer: Analyzer, encoder: LexicalEncoder, text: str) -> None:
    assert isinstance(clean(text), str) and isinstance(fold(text), str)
    assert fold(fold(text)) == fold(text)  # folding is a normal form
    assert detect_language(text) in ("ar", "en")
    terms = analyzer.terms(text)
    assert all(isinstance(t, str) and t for t in terms)
    _finite_sparse(encoder.document(text))
    _finite_sparse(encoder.query(text))
    assert all(isinstance(s, str) and len(s) >= 2 for s in encoder.skeletons(text))
    assert all(isinstance(s, str) and len(s) >= 2 for s in name_skeletons(text))
    for word in text.split()[:20]:
        assert isinstance(latin_skeleton(word), str) and isinstance(arabic_skeleton(word), str)
        assert all(len(g) == 4 for g in char_grams(fold(word)) if len(fold(word)) >= 2)


# Questions built from the words a compound question is joined with, in any order.
_QUESTION_WORDS = st.lists(st.sampled_from(
    ["who", "what", "and", "on", "which", ",", ";", "met", "the", "delegation", "Egypt", "when", "held",
     "من", "ما", "وما", "ومن", "وكم", "ومتى", "وفي", "أي", "،", "؛", "ترأس", "الاجتماع", "المتوقع", "زال",
     "في", "القاهرة", "؟", "?"]), max_size=40).map(" ".join)


@settings(max_examples=examples(300), deadline=None)
@given(text=st.one_of(ANY_TEXT, _QUESTION_WORDS))
@example(text="Who met, and")
@example(text="، ومن ومن ومن")
def test_a_compound_question_is_split_without_losing_a_word(text: str) -> None:
    parts = split_compound(text)
    assert parts and all(isinstance(p, str) for p in parts)
    if len(parts) == 1:
        assert parts == [text]
    else:
        words = re.findall(r"[^\W_]+", text)
        assert re.findall(r"[^\W_]+", " ".join(parts)) == words  # the same words, in the same order
        assert all(p.endswith(("?", "؟")) for p in parts)


@pytest.fixture(scope="module")
def default_chunker() -> Chunker:
    return Chunker(IndexSettings().chunk_tokens)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(_ARABIC_SOUP, st.text(max_size=300)))
@example(text="ﷺ. ﷲ؟ ﻻ؛ " * 40)
def test_chunks_at_the_default_size_are_exact_slices_with_sentences_inside(default_chunker: Chunker,
                                                                          text: str) -> None:
    """The default chunk size (tests/test_chunking.py fuzzes a tiny one), with presentation forms that
    NFKC would change: offsets must refer to the text as given, not a normalized copy."""
    for chunk in default_chunker.chunk(text):
        assert 0 <= chunk.start < chunk.end <= len(text)
        assert text[chunk.start : chunk.end] == chunk.text
        for s, e in chunk.sentences:
            assert 0 <= s < e <= len(chunk.text)
        assert chunk.sentences == sentence_spans(chunk.text)


# -- the citation check on any model output, whole or streamed in any pieces --------------------------------------

_REPLY_PIECES = st.lists(st.one_of(
    st.text(alphabet=st.sampled_from(list(" \t\n.,،؛:!?؟ab س[]0123456789٠٩,")), max_size=12),
    st.sampled_from(["[1]", "[7]", "[99]", "[1, 2]", "[٢]", "[" + "9" * 5000 + "]", "[ 3 ]", "[2،99]", "[", "]",
                     "[[99]1]", "[[", "]]", "[[7]", "1]", "[ ١ ، ٩٩ ]", "[0]", "\U000f0001"]),
), max_size=12)
_SHOWN_MARKER = re.compile(r"\[\s*(\d+(?:\s*[,،]\s*\d+)*)\s*\]")


def unbacked_markers(text: str, checker: MarkerChecker) -> list[str]:
    """Every ``[n]``-like marker a reader sees in ``text`` that no recorded passage backs."""
    bad = []
    for m in _SHOWN_MARKER.finditer(text):
        for raw in re.split(r"\s*[,،]\s*", m.group(1)):
            k = int(raw) if len(raw) <= 6 else 0
            if not (1 <= k <= checker.n_passages and k in checker.order):
                bad.append(m.group())
    return bad


def check_whole_and_streamed(pieces: list[str], n_passages: int) -> str:
    whole = "".join(pieces)
    checker = MarkerChecker(n_passages)
    expected = tidy(checker.check(whole))
    assert not unbacked_markers(expected, checker), (whole, expected)
    streaming, tidier = MarkerChecker(n_passages), StreamTidy()
    shown = "".join(tidier.feed(streaming.feed(p)) for p in pieces)
    shown += tidier.feed(streaming.finish()) + tidier.finish()
    assert shown == expected  # what a client is shown while it streams is the final answer text
    assert streaming.order == checker.order
    return expected


@settings(max_examples=examples(300), deadline=None)
@given(pieces=_REPLY_PIECES, n_passages=st.integers(min_value=1, max_value=5))
@example(pieces=["Hamas said 900 [[99]1]."], n_passages=2)
@example(pieces=["Hamas said 900 [", "[99]", "1]."], n_passages=2)
@example(pieces=["x [\U000f0001", "1] y"], n_passages=2)
def test_markers_and_whitespace_are_checked_the_same_whole_or_streamed(pieces: list[str], n_passages: int) -> None:
    check_whole_and_streamed(pieces, n_passages)


def test_30000_seeded_replies_leave_no_unbacked_marker() -> None:
    """Replies built at random (seeded) from brackets, digits in two scripts, separators and text, checked whole
    and streamed in random pieces: no marker survives that a passage does not back."""
    rng = random.Random(20261201)
    atoms = list("[[[]]]  ,،") + ["1", "2", "3", "9", "٢", "٠", "12", "99", "0", "a", "س", ".", "\n", "[1]", "[99]"]
    for _ in range(30_000):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(1, 24)))
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(0, 4))))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        check_whole_and_streamed(pieces, rng.randint(1, 5))
