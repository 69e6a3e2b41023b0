"""Sentence boundaries: a URL, an e-mail address or a number like 2.5 never ends a sentence; page furniture (a
link-only line, a "watch / read more / follow us" call, a photo credit) stays in the text but is never offered
as an answer sentence."""

from __future__ import annotations

import pytest

from index.ingest import Indexer
from rag.engine import Sanad
from rag.models import Article
from rag.sentences import answer_spans, is_furniture, sentence_spans, split_sentences

TEXT = ("قال الوزير إن النمو بلغ 2.5 في المئة هذا العام.\nشاهد الآن: https://www.youtube.com/watch?v=ab.c1\n"
        "وللاستفسار يمكن مراسلة info@sabq.org أو زيارة www.gdp.gov.sa للاطلاع على التفاصيل.\n"
        "(تصوير: محمد العلي)\nاقرأ أيضا: الوزير يزور جدة\n"
        "وقال شاهد عيان إن الحريق اندلع صباحا.وأضاف أن الدفاع المدني وصل بعد دقائق.")


def sentences(text: str, spans: list[tuple[int, int]]) -> list[str]:
    return [text[s:e] for s, e in spans]


def test_urls_emails_and_decimals_do_not_end_a_sentence() -> None:
    assert "".join(split_sentences(TEXT)) == TEXT  # offsets stay exact
    found = sentences(TEXT, sentence_spans(TEXT))
    assert found[0] == "قال الوزير إن النمو بلغ 2.5 في المئة هذا العام."
    assert "شاهد الآن: https://www.youtube.com/watch?v=ab.c1" in found
    assert "وللاستفسار يمكن مراسلة info@sabq.org أو زيارة www.gdp.gov.sa للاطلاع على التفاصيل." in found
    # A dot between Arabic words still ends a sentence (news text often drops the space after it).
    assert found[-2:] == ["وقال شاهد عيان إن الحريق اندلع صباحا.", "وأضاف أن الدفاع المدني وصل بعد دقائق."]


def test_furniture_is_kept_in_the_text_but_never_an_answer_sentence() -> None:
    answers = sentences(TEXT, answer_spans(TEXT))
    assert answers == [
        "قال الوزير إن النمو بلغ 2.5 في المئة هذا العام.",
        "وللاستفسار يمكن مراسلة info@sabq.org أو زيارة www.gdp.gov.sa للاطلاع على التفاصيل.",
        "وقال شاهد عيان إن الحريق اندلع صباحا.",
        "وأضاف أن الدفاع المدني وصل بعد دقائق.",
    ]


@pytest.mark.parametrize(("line", "furniture"), [
    ("شاهد الآن: https://www.", True),
    ("https://t.co/abc123", True),
    ("لمراسلة الكاتب: ralmotere@alriyadh.net", True),
    ("تابعونا على تويتر", True),
    ("رابط الخبر بصحيفة الوئام: بالفيديو..", True),
    ("Read more: https://example.com/story", True),
    ("Photo: Reuters", True),
    ("شاهد عيان قال إن الانفجار وقع صباحا", False),
    ("شارك في الاجتماع ممثلون عن مصر وقطر وتركيا والولايات المتحدة لبحث المرحلة الثانية من الاتفاق", False),
    ("Share prices fell sharply on Wednesday after the central bank raised interest rates again", False),
])
def test_what_counts_as_furniture(line: str, furniture: bool) -> None:
    assert is_furniture(line) is furniture


def test_a_watch_now_line_is_never_quoted(engine: Sanad) -> None:
    text = ("افتتح أمير منطقة الرياض معرض الكتاب الدولي بمشاركة 500 دار نشر من 30 دولة.\n"
            "شاهد الآن: https://www.example.com/riyadh-book-fair معرض الكتاب\n"
            "ويستمر المعرض عشرة أيام ويتضمن ندوات وأمسيات شعرية.")
    Indexer(engine.store, engine.encoder, engine.embedder, engine.settings.index).index_articles(
        [Article(id="book-fair", title="معرض الكتاب", text=text)])
    (passage,) = engine.search("شاهد الآن معرض الكتاب", top_k=1)
    offered = [passage.text[s:e] for s, e in passage.sentences]  # what the answerer may quote
    assert "شاهد الآن" in passage.text and not any("شاهد" in s or "http" in s for s in offered)
    assert len(offered) == 2
    for question in ("كم دار نشر تشارك في معرض الكتاب الدولي في الرياض؟", "أين أشاهد معرض الكتاب الآن؟"):
        answer = engine.ask(question)
        assert all("http" not in c.quote and "شاهد" not in c.quote for c in answer.citations), question
    assert any("500 دار نشر" in c.quote for c in engine.ask("كم دار نشر تشارك في معرض الكتاب؟").citations)
