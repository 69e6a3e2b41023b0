"""What Sanad says in its own words, in the question's language."""

from __future__ import annotations

from rag.models import Language

REFUSAL: dict[Language, str] = {
    "ar": "لا تتضمن المقالات المتاحة إجابة عن هذا السؤال.",
    "en": "The available articles do not contain an answer to this question.",
}

# Offline, English questions are answered with Arabic quotes: say so.
QUOTE_INTRO: dict[Language, str] = {
    "ar": "",
    "en": "The articles (in Arabic) say: ",
}


def refusal(lang: Language) -> str:
    return REFUSAL[lang]
