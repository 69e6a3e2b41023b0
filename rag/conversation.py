"""Follow-up questions made standalone before retrieval (offline rule; the LLM does it when configured)."""

from __future__ import annotations

import re

from rag.models import Turn
from rag.text import Analyzer

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


def previous_question(history: list[Turn], turns: int = 2) -> str | None:
    """The last user questions (two by default, so a follow-up of a follow-up keeps its subject)."""
    asked = [t.content for t in history if t.role == "user"][-turns:]
    return " ".join(asked) if asked else None


def carry_context(question: str, history: list[Turn], analyzer: Analyzer) -> str | None:
    """``question`` plus the previous question's content words, when it reads as a follow-up.

    A follow-up is short (three content words or fewer) or refers back with a
    pronoun. Returns ``None`` when the question stands on its own.
    """
    prev = previous_question(history)
    if not prev:
        return None
    words = analyzer.tokens(question)
    if len(words) > _FEW_CONTENT_WORDS and not _REFERRING.search(question):
        return None
    have = set(words)
    carried = [w for w in dict.fromkeys(analyzer.tokens(prev)) if w not in have]
    if not carried:
        return None
    return f"{question.strip()} ({' '.join(carried)})"
