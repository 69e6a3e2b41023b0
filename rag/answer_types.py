"""What kind of thing a question asks for, and whether a sentence holds that kind of thing.

Without a model, five answer types can be checked: a "how many" question needs a number, a "when"
question a time expression, a "who" question a person (a title or role, or a name in Latin
letters), a "where" question a place, a "which company / agency / ministry" question an
organisation. Everything is matched on whole words of the folded text
(alef, ya and ta marbuta unified), with Arabic's attached clitics (و ف ب ل ك and ال) allowed in
front: ``آب`` (August) matches ``وآب`` but never the inside of ``المخابرات``.

The word lists are general Arabic and English vocabulary (number words, month and weekday names,
titles, place nouns), not tuned to any question set.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from rag.text import fold

AnswerType = Literal["count", "time", "person", "place", "organization"]

# Question cues, on the folded question (so متى is written متي). Arabic interrogatives may carry و/ف.
_AR_Q = r"(?:^|\s)[وف]?"


def _en_wh(word: str) -> str:
    """English "who", "when", "where" ask only as question words: first, after a clause break, a conjunction
    or a preposition ("and when", "since when", "with whom"), or last ("…was born when?"). Inside a question
    they are often relative: "Who was the leader when the Franks entered…" asks for a person, "What did the
    man who…" for neither."""
    return (rf"(?:^|[,;:]\s*|\b(?:and|but|or|since|until|till|from|by|to|with|for|of|at|in)\s+)(?:{word})\b"
            rf"|\b(?:{word})\s*\??$")


_QUESTION_CUES: dict[AnswerType, re.Pattern[str]] = {
    "count": re.compile(_AR_Q + r"(?:كم|بكم)(?=\s|$)|(?:^|\s)(?:ما|وما)\s+عدد(?=\s|$)|\bhow\s+(?:many|much)\b"),
    "time": re.compile(
        _AR_Q + r"متي(?=\s|$)|(?:^|\s)(?:في|فى)\s+اي\s+(?:تاريخ|يوم|عام|سنه|شهر|وقت|ساعه)(?=\s|$)"
        r"|(?:^|\s)(?:ما|وما)\s+(?:تاريخ|موعد)(?=\s|$)"
        r"|" + _en_wh("when") + r"|\bwhat\s+(?:date|day|year|month|time)\b|\bon\s+which\s+(?:date|day)\b"
        r"|\bwhich\s+(?:year|day|date)\b"
    ),
    # "من" is also the preposition "from": only a question that starts with it asks "who".
    "person": re.compile(r"^[وف]?(?:من)(?=\s)|(?:^|\s)(?:من\s+هو|من\s+هي|من\s+هم)(?=\s|$)|"
                         + _en_wh("who(?:m|se)?")),
    "organization": re.compile(
        r"(?:^|\s)(?:اي|ما|ماهي|ما\s+هي)\s+(?:ال)?(?:شركه|منظمه|وكاله|وزاره|جهه|هييه|موسسه|قناه|صحيفه|حزب|بنك"
        r"|مجموعه|وسيله|جمعيه|حركه|جامعه)(?=\s|$)"
        r"|\b(?:which|what)\s+(?:company|firm|organi[sz]ation|agency|ministry|group|body|party|institution|bank"
        r"|channel|newspaper|network|outlet|movement|university)\b"
    ),
    "place": re.compile(
        _AR_Q + r"(?:اين|الى\s+اين|من\s+اين)(?=\s|$)|(?:^|\s)(?:في|فى)\s+اي\s+(?:مكان|مدينه|دوله|بلد|منطقه)(?=\s|$)"
        r"|" + _en_wh("where") + r"|\bin\s+which\s+(?:city|country|place|region)\b"
    ),
}

# Evidence in a sentence. Arabic words may carry clitics: conjunction, preposition, article.
_CLITICS = r"(?:[وف]?(?:[بلك]|ل?ل)?(?:ال)?)"


def _ar_words(words: str) -> str:
    """A whole-word pattern for Arabic ``words`` (written as usual; folded here as the text is)."""
    return rf"(?:^|[^\w])(?:{_CLITICS})(?:{fold(words)})(?=[^\w]|$)"


_NUMBER_WORDS = (
    "واحد|واحده|اثنان|اثنين|اثنتان|اثنتين|ثلاث|ثلاثه|اربع|اربعه|خمس|خمسه|ست|سته|سبع|سبعه|ثماني|ثمانيه|ثمان|تسع|تسعه"
    "|عشر|عشره|عشرون|عشرين|ثلاثون|ثلاثين|اربعون|اربعين|خمسون|خمسين|ستون|ستين|سبعون|سبعين|ثمانون|ثمانين|تسعون|تسعين"
    "|(?:ثلاث|اربع|خمس|ست|سبع|ثماني|ثمان|تسع)?م(?:ا)?ئة|مئتان|مئتين|مائتان|مائتين|مئات|الف|الفا|الفين|الاف|مليون|ملايين|مليار|مليارات|عشرات|بضع|بضعه|عده|نصف|ربع|ثلث|ثلثي|ثلثا|عديد"
)
_EN_NUMBER_WORDS = (
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|dozens?|hundreds?|thousands?|millions?"
    r"|billions?|several|half"
)
_MONTHS = (
    "يناير|فبراير|مارس|ابريل|مايو|يونيو|يونيه|يوليو|يوليه|اغسطس|سبتمبر|اكتوبر|نوفمبر|ديسمبر"
    "|كانون|شباط|اذار|نيسان|ايار|حزيران|تموز|اب|ايلول|تشرين"
)
# Explicit dates (digits, month names) answer "when" best; weekdays and deictic words ("yesterday",
# "this morning") answer it relative to the article's date.
_RELATIVE_TIME_WORDS = (
    "الاثنين|اثنين|الثلاثاء|ثلاثاء|الاربعاء|اربعاء|الخميس|خميس|الجمعه|جمعه|السبت|سبت|الاحد|احد"
    "|امس|البارحه|اليوم|غدا|الليله|صباح|صباحا|مساء|ظهر|ظهرا|فجر|حاليا|مؤخرا|قريبا|لاحقا|مطلع|اواخر|اوائل|منتصف"
)
# Centuries and decades ("the nineties", "the nineteenth century") date things too.
_PERIODS = "قرن|القرن|قرون|(?:عشرين|ثلاثين|اربعين|خمسين|ستين|سبعين|ثمانين|تسعين)(?:يات|ات)"
_EN_PERIODS = r"century|centuries|decades?"
_EN_MONTHS = r"january|february|march|april|may|june|july|august|september|october|november|december"
_EN_RELATIVE_TIME_WORDS = (
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|yesterday|today|tomorrow|tonight|morning|evening"
    r"|recently|ago"
)
_PERSON_WORDS = (
    "السيد|السيده|الرئيس|رئيس|رئيسه|الوزير|وزير|وزيره|اللواء|لواء|العميد|الفريق|الشيخ|شيخ|الامير|امير|الملك|ملك"
    "|المتحدث|متحدث|الناطق|ناطق|السفير|سفير|ممثل|مندوب|قائد|مدير|الامين|امين|زعيم|نائب|مسؤول|الدكتور|الدكتوره"
    "|المبعوث|مبعوث|مستشار|عضو|النائب|القيادي|قيادي"
)
# Plurals and groups (officials, heads, ministers, leaders, representatives, delegates, envoys, delegations):
# people are named by kind, not by name: weaker evidence for "who", as a weekday is for "when".
_PEOPLE_WORDS = (
    "رؤساء|مسؤولين|مسؤولون|مسؤولو|وزراء|قادة|زعماء|ممثلين|ممثلون|ممثلو|مندوبين|مندوبو|سفراء|مبعوثين|مستشارين"
    "|أعضاء|نواب|وفد|وفود|الوفد"
)
_EN_PEOPLE_WORDS = r"officials|leaders|ministers|representatives|delegates|envoys|delegations?|heads"
_EN_PERSON_WORDS = (
    r"mr|mrs|ms|dr|president|minister|prime|king|prince|sheikh|general|ambassador|spokesman|spokeswoman"
    r"|spokesperson|envoy|director|chief|leader|representative|official|secretary"
)
_PLACE_WORDS = (
    "مدينه|مدن|العاصمه|عاصمه|محافظه|ولايه|منطقه|مناطق|دوله|بلد|قريه|مخيم|معبر|حدود|شمال|جنوب|شرق|غرب|وسط|قطاع"
    "|اقليم|ميناء|مطار|مقر|ساحه"
)
_EN_PLACE_WORDS = r"city|capital|province|region|country|village|camp|crossing|border|north|south|east|west|strip"

_ORG_WORDS = (
    "شركة|شركات|منظمة|وكالة|وزارة|جهة|هيئة|مؤسسة|قناة|صحيفة|حزب|بنك|مصرف|مجموعة|تحالف|جمعية|حركة|جامعة|مجلس"
    "|اتحاد|مركز|جهاز|مكتب|إدارة|الأمم المتحدة"
)
_EN_ORG_WORDS = (
    r"company|firm|consortium|group|agency|organi[sz]ation|ministry|council|party|bank|channel|newspaper|network"
    r"|movement|university|union|centre|center|office|authority|corporation|ltd|inc"
)

_EVIDENCE: dict[AnswerType, re.Pattern[str]] = {
    "count": re.compile(r"\d|" + _ar_words(_NUMBER_WORDS) + rf"|\b(?:{_EN_NUMBER_WORDS})\b"),
    "time": re.compile(r"\d|" + _ar_words(f"{_MONTHS}|{_PERIODS}") + rf"|\b(?:{_EN_MONTHS}|{_EN_PERIODS})\b"),
    "person": re.compile(_ar_words(_PERSON_WORDS) + rf"|\b(?:{_EN_PERSON_WORDS})\b"),
    "organization": re.compile(_ar_words(_ORG_WORDS) + rf"|\b(?:{_EN_ORG_WORDS})\b"),
    "place": re.compile(_ar_words(_PLACE_WORDS) + rf"|\b(?:{_EN_PLACE_WORDS})\b|\b(?:in|at|from)\s+[A-Z]"),
}
_RELATIVE_TIME = re.compile(_ar_words(_RELATIVE_TIME_WORDS) + rf"|\b(?:{_EN_RELATIVE_TIME_WORDS})\b")
_PEOPLE = re.compile(_ar_words(_PEOPLE_WORDS) + rf"|\b(?:{_EN_PEOPLE_WORDS})\b")
# A name in Latin letters (capitalised, not the sentence's first word) counts as a person for "who".
_LATIN_NAME = re.compile(r"(?<=[a-z,;]\s)[A-Z][a-z]+")


@lru_cache(maxsize=20_000)
def asked_types(question: str) -> frozenset[AnswerType]:
    """The answer types ``question`` asks for (often none: "what", "why", "how")."""
    folded = fold(question).lower().strip()
    return frozenset(t for t, cue in _QUESTION_CUES.items() if cue.search(folded))


@lru_cache(maxsize=50_000)
def _evidence(sentence: str) -> frozenset[AnswerType]:
    folded = fold(sentence)
    # "place" also looks at the original case: "in Gaza" (a capital after a preposition).
    both = f"{folded} {sentence}"
    found = {t for t, pattern in _EVIDENCE.items() if pattern.search(both if t == "place" else folded)}
    if _LATIN_NAME.search(sentence):
        found.add("person")
    if "time" not in found and _RELATIVE_TIME.search(folded):
        found.add("relative_time")  # type: ignore[arg-type]  # weaker evidence for "time", see answer_strength
    if "person" not in found and _PEOPLE.search(folded):
        found.add("people")  # type: ignore[arg-type]  # weaker evidence for "person", see answer_strength
    return frozenset(found)


def holds(answer_type: AnswerType, sentence: str) -> bool:
    """Whether ``sentence`` contains the kind of thing ``answer_type`` names."""
    return answer_type in _evidence(sentence)


def answer_strength(question: str, sentence: str) -> int:
    """2: ``sentence`` holds every kind of thing ``question`` asks for (or nothing is checkable); 1: only
    relative time for a "when" question (a weekday, "yesterday"), or only people named by kind for a
    "who" question ("officials", "the heads of intelligence"); 0: something asked for is missing."""
    strength = 2
    evidence = _evidence(sentence)
    for t in asked_types(question):
        if t in evidence:
            continue
        if (t == "time" and "relative_time" in evidence) or (t == "person" and "people" in evidence):
            strength = 1
            continue
        return 0
    return strength


def answer_type_ok(question: str, sentence: str) -> bool:
    """Whether ``sentence`` holds every kind of thing ``question`` asks for (true when none is checkable)."""
    return answer_strength(question, sentence) > 0
