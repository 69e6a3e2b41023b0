"""The answer-type vocabulary: what a question asks for, and whether a sentence holds it, on whole words."""

from __future__ import annotations

import pytest

from rag.answer_types import AnswerType, answer_strength, answer_type_ok, asked_types, holds
from rag.extractive import is_heading
from rag.gloss import english_facts


@pytest.mark.parametrize("question, types", [
    ("كم مرة انتهك الجيش الإسرائيلي وقف إطلاق النار؟", {"count"}),
    ("وكم شخصاً استشهد؟", {"count"}),
    ("ما عدد الأسرى المفرج عنهم؟", {"count"}),
    ("How many UN Security Council members voted for it?", {"count"}),
    ("متى عُقد الاجتماع الافتراضي؟", {"time"}),
    ("ومتى وصل إلى القاهرة؟", {"time"}),
    ("في أي تاريخ عقد الاجتماع الطارئ في القاهرة؟", {"time"}),
    ("When did the ceasefire come into force?", {"time"}),
    ("من يرأس وفد حماس؟", {"person"}),
    ("ومن مثّل تركيا فيه؟", {"person"}),
    ("Who attended the security meeting in Cairo?", {"person"}),
    ("أين عقد الاجتماع السابق؟", {"place"}),
    ("Where did Israeli forces target vehicles?", {"place"}),
    ("ما الجهة المصرية التي أصدرت البيان؟", {"organization"}),
    ("Which company built the new grain terminal?", {"organization"}),
    ("ما الدور المتوقع من مصر؟", set()),  # "من" here is "from", not "who"
    ("What does the Israeli side focus on?", set()),
    # Inside a question "when", "who" and "where" are often relative, not asked.
    ("Who led the delegation when the talks resumed?", {"person"}),
    ("What did the minister who chaired the meeting announce?", set()),
    ("What is the crossing where the trucks wait called?", set()),
    ("And when did the delegation arrive?", {"time"}),
    ("Since when has the crossing been closed?", {"time"}),
    ("The statement was issued by whom?", {"person"}),
])
def test_what_a_question_asks_for(question: str, types: set[str]) -> None:
    assert asked_types(question) == types


# What a sentence must hold for each kind of question, on whole words: a number (in digits or words, a
# fraction), a time (a date, a month, a decade or century), a person (a title, a role, a Latin-script name),
# a place (a place noun or a named place), an organisation (an organisation noun).
@pytest.mark.parametrize("kind, sentence, held", [
    ("count", "انتهك وقف إطلاق النار أكثر من 900 مرة", True),
    ("count", "استشهد ثلاثة أشخاص", True),
    ("count", "أكثر من تسعمائة خرق", True),
    ("count", "killed thousands of people", True),
    ("count", "وتم أحياناً محو ثلثي سكانها", True),
    ("count", "ولد من جديد عديد المرات", True),
    ("count", "رحبت السلطة الفلسطينية بالاجتماع", False),
    ("time", "تجدد الاهتمام به منذ التسعينيات", True),
    ("time", "حتى الربع الثاني من القرن التاسع عشر", True),
    ("time", "until the late nineteenth century", True),
    ("time", "أجرت تحسينات على عينات المياه", False),  # ends like a decade, dates nothing
    ("person", "شارك السيد إبراهيم كالين في الاجتماع", True),
    ("person", "ترأس رئيس جهاز المخابرات الاجتماع", True),
    ("person", "The talks were led by Hamad for the movement", True),
    ("person", "تأخر دخول قوافل المساعدات", False),
    ("place", "أطلقت صواريخ من شمال غزة", True),
    ("place", "عبر معبر رفح", True),
    ("place", "The meeting was held in Miami", True),
    ("place", "رحبت السلطة بالاجتماع", False),
    ("organization", "أصدرت وزارة الخارجية المصرية بيانا", True),
    ("organization", "It was built by a consortium led by the Egyptian company Nile Logistics.", True),
    ("organization", "The Port of Alexandria opened a new grain terminal on Wednesday.", False),
])
def test_a_sentence_holds_what_a_kind_of_question_asks_for(kind: AnswerType, sentence: str, held: bool) -> None:
    assert holds(kind, sentence) is held


def test_time_matches_whole_words_only() -> None:
    assert holds("time", "عقد الاجتماع في 25 نوفمبر")
    assert holds("time", "وفي آب الماضي")  # آب (August), with a clitic
    # A weekday or "yesterday" answers "when" only relative to the article's date: weaker evidence.
    assert answer_strength("متى وصل الوفد؟", "وصل يوم الأحد") == 1
    assert answer_strength("متى وصل الوفد؟", "وصل في 12 يناير") == 2
    assert answer_strength("متى وصل الوفد؟", "وصل الوفد إلى القاهرة") == 0
    # آب folded is "اب": it must not match inside words (المخابرات, لمتابعة).
    assert not holds("time", "رؤساء أجهزة المخابرات لمتابعة الملف")
    assert not answer_type_ok("متى اجتمع رؤساء المخابرات؟", "اجتمع رؤساء أجهزة المخابرات لمتابعة الملف")



def test_people_named_by_kind_answer_who_only_weakly() -> None:
    # "the heads of intelligence" says who in kind; a title with a name says who.
    assert answer_strength("من شارك في الاجتماع؟", "جمع الاجتماع كبار المسؤولين ورؤساء أجهزة المخابرات") == 1
    assert answer_strength("من شارك في الاجتماع؟", "حضر الشيخ محمد بن عبد الرحمن آل ثاني الاجتماع") == 2
    assert answer_strength("Who attended?", "Several officials and ministers attended") == 1
    assert answer_strength("من شارك في الاجتماع؟", "تأخر دخول قوافل المساعدات") == 0




def test_a_line_without_sentence_punctuation_is_a_heading() -> None:
    text = "المشاركون في اجتماع طارئ بالقاهرة\nبدايةً، ترأس اللواء حسن رشاد الاجتماع عن الجانب المصري.\n"
    first_end = text.index("\n")
    assert is_heading(text, 0, first_end)
    second = text.index("بداية")
    assert not is_heading(text, second, text.index(".", second) + 1)


def test_english_facts_of_an_arabic_sentence() -> None:
    assert english_facts("اجتماع طارئ -القاهرة – 25 نوفمبر 2025") == ["25 November 2025"]
    assert english_facts("انتهك وقف إطلاق النار أكثر من 900 مرة وأدت إلى استشهاد 440 شخصا") == ["900", "440"]
    assert english_facts("وصل الوفد يوم الأحد") == ["Sunday"]
    assert english_facts("رئيس جهاز الاستخبارات الوطنية التركية (MIT)") == ["MIT"]
