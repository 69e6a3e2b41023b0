"""Sentences and chunks: every piece must map back to the exact original text (quotes depend on it)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from index.chunker import Chunk, Chunker, _o200k
from rag.sentences import sentence_spans, split_sentences
from rag.settings import IndexSettings
from tests.conftest import SEED_IDS, examples, read_seed

BUDGET = IndexSettings().chunk_tokens


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(BUDGET)


@pytest.fixture(scope="module")
def small_chunker() -> Chunker:
    return Chunker(16)


def test_split_sentences_joins_back_to_the_text() -> None:
    text = "قال المتحدث: «لن نتراجع». ثم غادر!\n\nسؤال آخر؟ نعم؛ ربما...  النهاية"
    assert "".join(split_sentences(text)) == text


def test_sentence_boundaries_on_latin_and_arabic_marks_and_newlines() -> None:
    text = "هل انتهى الاجتماع؟ نعم؛ انتهى مساء أمس. يا للمفاجأة! Really? Yes.\nسطر جديد\nوآخر"
    pieces = [p.strip() for p in split_sentences(text)]
    assert pieces == [
        "هل انتهى الاجتماع؟", "نعم؛", "انتهى مساء أمس.", "يا للمفاجأة!", "Really?", "Yes.", "سطر جديد", "وآخر",
    ]


def test_arabic_comma_does_not_end_a_sentence() -> None:
    assert len(split_sentences("التقى الوفدان، ثم ناقشا الهدنة، وانتهى اللقاء.")) == 1


def test_sentence_spans_point_at_trimmed_sentences() -> None:
    text = "  أولاً، اتفق المشاركون.   ثانياً، حددوا موعدا؟\n\n- . \nأخيرا"
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == ["أولاً، اتفق المشاركون.", "ثانياً، حددوا موعدا؟", "أخيرا"]


def _assert_chunks_map_to(text: str, chunks: list[Chunk]) -> None:
    covered: set[int] = set()
    last_start = -1
    for c in chunks:
        assert 0 <= c.start < c.end <= len(text)
        assert text[c.start : c.end] == c.text
        assert c.start > last_start  # in document order
        last_start = c.start
        covered.update(range(c.start, c.end))
        for s, e in c.sentences:
            assert 0 <= s < e <= len(c.text)
            assert text[c.start + s : c.start + e] == c.text[s:e]
    # Nothing but whitespace is lost between chunks.
    assert all(ch.isspace() for i, ch in enumerate(text) if i not in covered)


@pytest.mark.parametrize("doc_id", SEED_IDS)
def test_seed_chunks_and_their_sentences_are_exact_slices(chunker: Chunker, doc_id: str) -> None:
    text = read_seed(doc_id)
    chunks = chunker.chunk(text)
    assert len(chunks) >= 2
    _assert_chunks_map_to(text, chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    enc = _o200k()
    assert all(len(enc.encode(c.text)) <= BUDGET for c in chunks)


def test_a_chunk_never_splits_a_sentence_of_the_seeds(chunker: Chunker) -> None:
    text = read_seed("004_62f51f2fac3a5964")
    fact = "وقد صرح ممثل حركة حماس غازي حمد بأن الجيش الإسرائيلي انتهك وقف إطلاق النار أكثر من 900 مرة"
    holding = [c for c in chunker.chunk(text) if fact in c.text]
    assert len(holding) == 1
    assert any(holding[0].text[s:e].startswith(fact) for s, e in holding[0].sentences)


def test_repeated_paragraphs_get_their_own_offsets() -> None:
    # News pages repeat headlines and paragraphs; each chunk must point at its own place, not the first copy.
    sentence = "استضافت القاهرة اجتماعا أمنيا رفيع المستوى جمع رؤساء أجهزة المخابرات في مصر وقطر وتركيا."
    paragraph = " ".join([sentence] * 12)
    text = "تابعونا على المنصات.\n" + paragraph + "\nتابعونا على المنصات."
    chunks = Chunker(64).chunk(text)
    assert len(chunks) >= 3
    _assert_chunks_map_to(text, chunks)
    assert all(b.start >= a.end for a, b in zip(chunks, chunks[1:], strict=False))
    assert chunks[-1].end == len(text)


def test_arabic_chunk_holds_about_as_many_words_as_an_english_one(chunker: Chunker) -> None:
    en = " ".join(["The delegation arrived in Cairo on Sunday evening to discuss the exchange of prisoners."] * 60)
    ar = " ".join(["وصل الوفد الفلسطيني مساء أمس الأحد إلى القاهرة للانخراط في نقاشات حول تبادل الأسرى."] * 60)

    def words_per_chunk(text: str) -> float:
        chunks = chunker.chunk(text)
        full = chunks[:-1]  # the last one is a remainder
        return sum(len(c.text.split()) for c in full) / len(full)

    # o200k spends about one token per Arabic word; cl100k about three, which would give ~1/3.
    assert words_per_chunk(ar) >= 0.5 * words_per_chunk(en)


def test_empty_and_blank_text_give_no_chunks(chunker: Chunker) -> None:
    assert chunker.chunk("") == []
    assert chunker.chunk(" \n\n\t ") == []


_ARABICISH = st.text(alphabet=st.sampled_from(list("ابتقمنوي ءأإآةى.؟!؛،\n\t«»\"'0123456789٠١٢ًٌَُـ")), max_size=400)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=400), _ARABICISH))
@example(text="0:0:0\x810\x81\x95\u9d01\x81")  # a chunk repeating earlier text was placed on the copy
def test_any_text_chunks_without_crashing_into_exact_slices(small_chunker: Chunker, text: str) -> None:
    assert "".join(split_sentences(text)) == text
    for s, e in sentence_spans(text):
        assert 0 <= s < e <= len(text)
    _assert_chunks_map_to(text, small_chunker.chunk(text))


def test_a_line_announcing_a_table_is_chunked_with_the_table(chunker: Chunker) -> None:
    # In the seed the table's caption fell at the end of one chunk and its rows began the next: the caption
    # was retrieved and quoted alone, the rows without what they are.
    text = read_seed("000_ddb8d80929f4d864")
    caption = "جدول يوضح مساهمة الأطراف في تنفيذ المرحلة الثانية من اتفاق غزة:"
    row = "الولايات المتحدة وساطة سياسية وتقديم الدعم المالي واللوجستي"
    chunks = chunker.chunk(text)
    _assert_chunks_map_to(text, chunks)
    assert [c for c in chunks if caption in c.text] == [c for c in chunks if row in c.text]


def test_a_lead_in_that_ends_a_chunk_opens_the_next_and_nothing_is_lost(small_chunker: Chunker) -> None:
    filler = "وصل الوفد الفلسطيني مساء أمس الأحد إلى القاهرة للانخراط في نقاشات حول تبادل الأسرى."
    lead = "وأبرز ما اتفق عليه المجتمعون ما يلي:"
    text = f"{filler}\n{lead}\n\nتعزيز الرقابة المشتركة على الحدود\nتسريع إعادة إعمار المدارس\n{filler}"
    chunks = small_chunker.chunk(text)
    _assert_chunks_map_to(text, chunks)
    assert not any(c.text.rstrip().endswith(":") for c in chunks[:-1])
    holding = next(c for c in chunks if lead in c.text)
    assert holding.text.startswith(lead) and "تعزيز الرقابة" in holding.text
