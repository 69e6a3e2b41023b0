"""Compound questions: one message that joins two questions ("Who heads the delegation, and what did he
say?", "من ترأس الاجتماع، وما الدور المتوقع من مصر؟").

Offline, a compound question is answered part by part: each part is retrieved and answered on its own
words, so the sentence answering the second part is not outscored by the ones answering the first, and a
part the articles do not answer is said to be unanswered rather than silently dropped.

A split needs an interrogative right after the join (English "and" or ";" + who/what/which/when/where/
why/how, after a preposition or not; Arabic و + من/ما/ماذا/متى/أين/كم/كيف/لماذا/هل/أي, attached as Arabic
writes it), a question word in the first part, and both sides long enough to be questions. In English a
comma alone is no join: ", which ..." opens a relative clause. Written by hand: this is general English
and Arabic question syntax, which no library here parses.
"""

from __future__ import annotations

import re

from rag.conversation import carry_context
from rag.models import Turn
from rag.text import Analyzer

_EN_WH = r"(?:who|whom|whose|what|which|when|where|why|how)"
_EN_PREP = r"(?:(?:on|in|at|for|from|to|by|with|since|until|after|before|under|about)\s+)?"
# "..., and who", "... and on what date", "...; which": a wh-word (after a preposition) starts the second
# question. A comma alone is not a join: ", which gave ...", ", in which ..." are relative clauses, and
# "When ..., what ...?" is one question.
_EN_JOIN = re.compile(rf"(?:\s*,?\s+(?:and|but)\s+|\s*;\s*(?:and\s+)?)(?={_EN_PREP}{_EN_WH}\b)", re.IGNORECASE)
_EN_QUESTION = re.compile(
    rf"\b{_EN_WH}\b|^\W*(?:and\s+|so\s+)?(?:is|are|was|were|did|do|does|has|have|had|can|"
    r"could|will|would|should)\b",
    re.IGNORECASE,
)
_AR_WH_NOT_MAN = r"(?:ما|ماذا|متى|متي|أين|اين|كم|كيف|لماذا|هل|أي|اي|بكم)"  # من is also "from": apart
_AR_WH = rf"(?:من|{_AR_WH_NOT_MAN})"
_AR_PREP = r"(?:(?:في|فى|على|إلى|الى|عن|ب|ل|منذ)\s*)?"
# The conjunction و is written attached: "، وما", " ومتى", "وفي أي". Not a question: the preposition من
# ("and from") before a noun, mostly with the article ("ومن المتوقع") or in set phrases ("ومن ثم", "ومن
# جانبه"), and "وما زال" ("still").
_AR_JOIN = re.compile(
    r"(?:\s*[،,؛;]\s*|\s+)(?=و(?:من\s+(?!ال|ثم\b|جه|جانب|خلال|بين|اجل|أجل|قبل|بعد|دون|حيث)"
    rf"|{_AR_PREP}{_AR_WH_NOT_MAN}\s+(?!زال|يزال|تزال|دام)))"
)
_AR_QUESTION = re.compile(rf"(?:^|\s)[وف]?{_AR_PREP}{_AR_WH}(?:\s|$)")
_MIN_WORDS = 3  # each side: fewer and it is a pair of question words ("who and when"), not two questions


def _words(text: str) -> int:
    return len(re.findall(r"[^\W_]+", text))


def split_compound(question: str) -> list[str]:
    """The questions ``question`` joins, in order; ``[question]`` when it asks one thing."""
    text = question.strip()
    arabic = bool(re.search("[\u0621-\u064a]", text))
    asks, join = (_AR_QUESTION, _AR_JOIN) if arabic else (_EN_QUESTION, _EN_JOIN)
    pieces = [p.strip(" ،,;؛") for p in join.split(text)]
    parts: list[str] = []
    for piece in pieces:
        if parts and _words(piece) < _MIN_WORDS + 1:  # the wh-word and at least three more
            parts[-1] = f"{parts[-1]} {piece}"  # too short to stand alone: it stays with what it follows
        else:
            parts.append(piece)
    if len(parts) < 2 or _words(parts[0]) < _MIN_WORDS or not asks.search(parts[0]):
        return [question]
    mark = "؟" if arabic else "?"
    return [p if p.endswith(("?", "؟")) else p + mark for p in parts]


def standalone_parts(question: str, analyzer: Analyzer) -> list[str]:
    """The parts of a compound question, each to be asked alone: a part that leans on the one before ("and
    who chaired it?") takes that part's content words, as an offline follow-up does. One part (the
    question itself) when it is not compound."""
    parts = split_compound(question)
    if len(parts) < 2:
        return parts
    out = [parts[0]]
    for before, part in zip(parts, parts[1:], strict=False):
        carried = carry_context(part, [Turn(role="user", content=before)], analyzer, opening=False)
        out.append(carried or part)
    return out
