"""Compound questions ("Who …, and what …?"): each part answered on its own words, with its own citations,
and a part the articles do not answer named as such."""

from __future__ import annotations

import pytest

from rag.conversation import carry_context
from rag.engine import Sanad
from rag.models import Turn
from rag.questions import split_compound, standalone_parts
from rag.text import Analyzer
from tests.test_understanding import assert_quotes_are_exact, cited_docs

HAMAS_TALKS = "002_823df25e19dc7a4e"
ONLINE_MEETING = "004_62f51f2fac3a5964"


@pytest.mark.parametrize(("question", "parts"), [
    ("Who heads the delegation, and what did Egypt say about the talks?",
     ["Who heads the delegation?", "what did Egypt say about the talks?"]),
    ("When was the meeting held and on what date did the second round begin?",
     ["When was the meeting held?", "on what date did the second round begin?"]),
    ("من ترأس الاجتماع الطارئ، وما الدور المتوقع من مصر بعده؟",
     ["من ترأس الاجتماع الطارئ؟", "وما الدور المتوقع من مصر بعده؟"]),
    ("على خطة أي رئيس تقوم المفاوضات وكم عضواً صوّت لصالح القرار؟",
     ["على خطة أي رئيس تقوم المفاوضات؟", "وكم عضواً صوّت لصالح القرار؟"]),
])
def test_a_question_that_joins_two_questions_is_split_into_them(question: str, parts: list[str]) -> None:
    assert split_compound(question) == parts


@pytest.mark.parametrize("question", [
    "Which player got a penalty, which gave the other team a new set of downs?",  # a relative clause
    "When many people are arrested, what is a common tactic?",  # a subordinate clause, one question
    "Who met with whom and when?",  # question words, not questions
    "What did Egypt say about who should govern Gaza?",
    "ما الذي قاله المتحدث ومن المتوقع أن يحضر؟",  # ومن المتوقع: "and it is expected"
    "متى عقد الاجتماع وما زالت المفاوضات جارية؟",  # وما زالت: "still"
    "من ترأس الاجتماع وما دوره؟",  # the second part too short to stand alone
    "Tell me about the talks and what Egypt said.",  # no question word in the first part
])
def test_one_question_is_left_whole(question: str) -> None:
    assert split_compound(question) == [question]


def test_a_part_that_leans_on_the_one_before_takes_its_words() -> None:
    first, second = standalone_parts("Who chaired the Cairo meeting, and what did they agree on there?", Analyzer())
    assert first == "Who chaired the Cairo meeting?"
    assert second.startswith("what did they agree on there?") and "cairo" in second.lower()


def test_both_parts_of_an_arabic_compound_question_are_answered(seeded_engine: Sanad) -> None:
    answer = seeded_engine.ask(
        "من ترأس وفد حماس في مفاوضات القاهرة، وكم مرة انتهك الجيش الإسرائيلي وقف إطلاق النار بحسب غازي حمد؟")
    assert answer.answerable
    assert "الحية" in answer.answer and "900" in answer.answer
    assert {HAMAS_TALKS, ONLINE_MEETING} <= cited_docs(answer)
    assert "لا تتضمن" not in answer.answer
    assert_quotes_are_exact(answer)


def test_both_parts_of_an_english_compound_question_are_answered(seeded_engine: Sanad) -> None:
    answer = seeded_engine.ask("Who chaired the emergency Cairo meeting for Egypt, and who represented Qatar there?")
    assert answer.answerable
    assert "حسن رشاد" in answer.answer and "آل ثاني" in answer.answer
    assert "do not answer" not in answer.answer
    assert_quotes_are_exact(answer)


@pytest.mark.parametrize(("question", "found", "said"), [
    ("من ترأس الجانب المصري في الاجتماع الطارئ بالقاهرة، ومن فاز بكأس العالم لكرة القدم عام 2018؟",
     "حسن رشاد", "لا تتضمن المقالات المتاحة إجابة عن: «ومن فاز بكأس العالم لكرة القدم عام 2018؟»"),
    ("Who heads the Hamas delegation in Cairo, and which team won the 2018 football World Cup?",
     "الحية", "The available articles do not answer: “which team won the 2018 football World Cup?”"),
])
def test_the_part_the_articles_do_not_answer_is_named(seeded_engine: Sanad, question: str, found: str,
                                                      said: str) -> None:
    answer = seeded_engine.ask(question)
    assert answer.answerable and found in answer.answer
    assert answer.answer.endswith(said)
    assert_quotes_are_exact(answer)


@pytest.mark.parametrize("follow_up", [
    "ومن مثّلها في اجتماع القاهرة الطارئ؟",  # مثّلها: "represented her" (Qatar)
    "ما الذي قاله رئيسها عن المفاوضات الجارية؟",  # رئيسها: "its president"
])
def test_an_arabic_pronoun_attached_to_a_word_points_back(follow_up: str) -> None:
    history = [Turn(role="user", content="ما الدور المتوقع من قطر في المرحلة الثانية؟")]
    assert "قطر" in (carry_context(follow_up, history, Analyzer()) or "")


def test_a_question_with_no_pronoun_stands_alone() -> None:
    history = [Turn(role="user", content="ما الدور المتوقع من قطر في المرحلة الثانية؟")]
    assert carry_context("من ترأس الجانب المصري في اجتماع القاهرة الطارئ؟", history, Analyzer()) is None


@pytest.mark.parametrize("question", ["Who won the 2022 World Cup?", "من فاز بكأس العالم 2022؟",
                                      "وزير الخارجية الروسي لافروف؟"])  # و begins the word: no continuation
def test_a_short_question_with_its_own_subject_stands_alone(question: str) -> None:
    history = [Turn(role="user", content="من يرأس وفد حماس في مفاوضات القاهرة؟")]
    assert carry_context(question, history, Analyzer()) is None


@pytest.mark.parametrize("question", ["وكم عدد سكان الصين؟", "وما عاصمة أستراليا؟",
                                      "And what is the capital of Australia?", "ومن كتب رواية مئة عام من العزلة؟"])
def test_a_question_opening_with_and_but_naming_only_its_own_subject_stands_alone(question: str) -> None:
    """An opening "and" (و) alone does not tie a question to the conversation: new questions often open so."""
    history = [Turn(role="user", content="من يرأس وفد حماس في مفاوضات القاهرة؟")]
    assert carry_context(question, history, Analyzer()) is None


@pytest.mark.parametrize("follow_up", ["ومتى وصل؟", "وعلى ماذا شددوا؟", "And when did he arrive?", "Turkey?",
                                       "وماذا عن تركيا؟", "ومتى وصل إلى القاهرة؟",
                                       "What about the Israeli delegation?"])
def test_a_question_that_continues_the_last_one_carries_its_subject(follow_up: str) -> None:
    history = [Turn(role="user", content="من يرأس وفد حماس في مفاوضات القاهرة؟")]
    assert "وفد" in (carry_context(follow_up, history, Analyzer()) or "")
