"""What Sanad says in its own words, in the question's language."""

from __future__ import annotations

from rag.models import Language

REFUSAL: dict[Language, str] = {
    "ar": "لا تتضمن المقالات المتاحة إجابة عن هذا السؤال.",
    "en": "The available articles do not contain an answer to this question.",
}

# Offline, a question in one script over articles in the other is matched only on names and
# numbers; a refusal then says so rather than claiming the articles lack the answer.
CROSS_SCRIPT_REFUSAL: dict[Language, str] = {
    "ar": "لم أجد إجابة في المقالات. دون نموذج لغوي لا أطابق الأسئلة العربية مع المقالات الإنجليزية إلا "
    "بالأسماء والأرقام؛ جرّب السؤال بالإنجليزية.",
    "en": "I could not find an answer in the articles. Without a language model, English questions are "
    "matched against Arabic articles only by names and numbers: try asking in Arabic, or configure an "
    "LLM or a multilingual embeddings endpoint (SANAD_LLM__BASE_URL, SANAD_EMBED__BACKEND).",
}


def refusal(lang: Language, cross_script: bool = False) -> str:
    return (CROSS_SCRIPT_REFUSAL if cross_script else REFUSAL)[lang]


# A compound question answered in part: the part the articles do not answer, named.
UNANSWERED_PART: dict[Language, str] = {
    "ar": "لا تتضمن المقالات المتاحة إجابة عن: «{part}»",
    "en": "The available articles do not answer: “{part}”",
}


def unanswered_part(lang: Language, part: str) -> str:
    return UNANSWERED_PART[lang].format(part=part.strip())


# What an offline answer opens with, before its quotes: an Arabic answer is the quotes alone; an answer close to
# the refusal line offers them as the closest the articles come.
ANSWER_LEAD: dict[Language, str] = {"ar": "", "en": "The articles say"}
HEDGE: dict[Language, str] = {
    "ar": "قد لا تجيب المقالات عن هذا السؤال مباشرة؛ أقرب ما ورد فيها",
    "en": "The articles may not answer this directly; the closest they come",
}


def answer_intro(lang: Language, sure: bool, arabic_quotes: bool) -> str:
    """The words before the first quote ("The articles say (in Arabic): ", or the hedge), or nothing."""
    lead = ANSWER_LEAD[lang] if sure else HEDGE[lang]
    if lang == "en" and arabic_quotes:
        lead += " (in Arabic)"
    return f"{lead}: " if lead else ""
