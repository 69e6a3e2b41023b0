"""Follow-up questions made standalone before retrieval (offline rule; the LLM does it when configured)."""

from __future__ import annotations

import re

from rag.models import Turn
from rag.text import Analyzer, _stopwords, fold

# Words that point back at something said before. Arabic also attaches its pronouns to verbs, nouns and
# prepositions: "مثّلها" (represented *her*), "رئيسها", "عليهم"; ها/هم/هما/هن ending a word of three
# letters or more are those clitics (a lone final ه is not: informal writing puts it for ة).
_REFERRING = re.compile(
    r"\b(it|its|they|them|their|he|him|his|she|her|that|this|those|these|there|then)\b"
    r"|(^|\s)(هو|هي|هم|ذلك|تلك|هذا|هذه|هؤلاء|هناك|عندها|حينها|فيه|فيها|منه|منها|عنه|عنها)(\s|$|[؟?.،])"
    r"|[\u0621-\u064a\u064b-\u0652]{3,}(?:ها|هم|هما|هن)(?=\s|$|[؟?.،])",
    re.IGNORECASE,
)
_FEW_CONTENT_WORDS = 3
# A question that opens by continuing the last one: "and …", "what about …", "then …".
_CONTINUING = re.compile(r"^\W*(and|also|what about|how about|then|ثم)\b", re.IGNORECASE)
# "What about …?", "وماذا عن …؟": the last question asked again of something else, a follow-up whatever it names.
_ASKS_AGAIN = re.compile(r"^\W*(?:(?:and\s+)?(?:what|how) about\b|[وف]?ماذا عن(?:\s|$))", re.IGNORECASE)


def _joined_and(word: str) -> bool:
    """و or ف joined to a function word (ومتى، وعلى، فمن): an "and". Many Arabic words begin with و themselves
    (وفد، وقف، وزير): only a function word after it counts."""
    return len(word) > 1 and word[0] in "وف" and fold(word[1:]) in _stopwords()


def _continues(question: str) -> bool:
    """Opens with "and …" (in Arabic :func:`_joined_and`: ومتى، وعلى ماذا، فمن)."""
    if _CONTINUING.search(question):
        return True
    first = question.strip().split(maxsplit=1)[0] if question.strip() else ""
    return _joined_and(first.strip("؟?.,،!"))


def previous_question(history: list[Turn], turns: int = 2) -> str | None:
    """The last user questions (two by default, so a follow-up of a follow-up keeps its subject)."""
    asked = [t.content for t in history if t.role == "user"][-turns:]
    return " ".join(asked) if asked else None


def carry_context(question: str, history: list[Turn], analyzer: Analyzer, opening: bool = True) -> str | None:
    """``question`` plus the previous question's content words, when it reads as a follow-up.

    A follow-up refers back with a pronoun or opens by continuing ("and when?", "ومتى؟"), or is short (three
    content words or fewer) without naming a subject of its own that the conversation lacks. Returns ``None``
    when the question stands on its own. ``opening``: whether an opening "and …" points back (not in a part of a
    compound question, where it only joins the parts).
    """
    prev = previous_question(history)
    if not prev:
        return None
    # An opening و/ف joined to a function word ("ومتى", "وعلى") is the "and", not a word of the question's own.
    words = [w for w in analyzer.tokens(question) if not _joined_and(w)]
    refers = bool(_REFERRING.search(question) or (opening and _ASKS_AGAIN.search(question)))
    points_back = refers or (opening and _continues(question))
    if len(words) > _FEW_CONTENT_WORDS and not points_back:
        return None
    if not refers and len(words) >= 2 and not set(words) & set(analyzer.tokens(prev)):
        # Naming its own subject and nothing of the conversation's ("Who won the 2022 World Cup?"): it stands
        # alone, and carrying the conversation in would answer it from the conversation. So too after an opening
        # "and" ("And what is the capital of Australia?", "وكم عدد سكان الصين؟"): a new question often opens
        # so, in Arabic above all (و), and only a word that refers back ties it to what was said.
        return None
    have = set(words)
    carried = [w for w in dict.fromkeys(analyzer.tokens(prev)) if w not in have]
    if not carried:
        return None
    return f"{question.strip()} ({' '.join(carried)})"
