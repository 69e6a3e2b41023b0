"""The offline answerer: picks the retrieved sentences that best answer the question.

No model: each candidate sentence is scored by how much of the question's
weighted vocabulary it covers (stems, plus character n-grams for names and
spelling variants); weights are inverse frequencies among the candidates, so
words every passage shares (غزة) count little. The answer quotes the best
sentences verbatim, each with its ``[n]`` citation; too little coverage is a
refusal.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from rag.lexical import LexicalEncoder
from rag.models import Citation, Passage
from rag.settings import AnswerSettings
from rag.text import detect_language, fold, fold_cached
from rag.translit import name_skeletons

_GRAM_SHARE = 0.35

# Answer types a sentence can be checked for without a model: a "how many"
# question needs a number, a "when" question a time expression.
_ASKS_COUNT = re.compile(r"(^|\s)(كم|بكم)(\s|$)|\bhow (many|much)\b", re.IGNORECASE)
_ASKS_TIME = re.compile(r"(^|\s)(متى|ومتى)(\s|$)|\bwhen\b|\bwhat (date|day|year|month)\b", re.IGNORECASE)
_NUMBER = re.compile(
    r"\d|(^|\s)[وب]?(ال)?(واحد|اثن|ثلاث|اربع|خمس|ست|سبع|ثمان|تسع|عشر|مئ|مائ|الف|الاف|مليون|ملايين|مليار|عشرات|مئات)",
)
_TIME = re.compile(
    r"\d|يناير|فبراير|مارس|ابريل|مايو|يونيو|يوليو|اغسطس|سبتمبر|اكتوبر|نوفمبر|ديسمبر|كانون|شباط|اذار|نيسان|ايار|"
    r"حزيران|تموز|اب|ايلول|تشرين|الاثنين|الثلاثاء|الاربعاء|الخميس|الجمعه|السبت|الاحد|امس|اليوم|غدا|الاسبوع|"
    r"الشهر|العام|صباح|مساء|منتصف|نهايه|بدايه|مطلع|اواخر|اوائل"
)


def answer_type_ok(question: str, sentence: str) -> bool:
    """Whether ``sentence`` holds the kind of thing ``question`` asks for (where checkable)."""
    folded = fold_cached(sentence)
    if _ASKS_COUNT.search(question) and not _NUMBER.search(folded):
        return False
    return not (_ASKS_TIME.search(question) and not _TIME.search(folded))


@dataclass
class Sentence:
    passage: Passage
    start: int  # relative to passage.text
    end: int
    text: str
    score: float = 0.0

    def citation(self, n: int) -> Citation:
        p = self.passage
        return Citation(
            n=n,
            doc_id=p.doc_id,
            title=p.title,
            chunk_id=p.chunk_id,
            text=p.text,
            quote=self.text,
            start=p.start + self.start,
            end=p.start + self.end,
        )


@dataclass
class Selection:
    sentences: list[Sentence]
    support: float  # coverage of the best sentence, 0..1


class SentenceScorer:
    """Scores sentences against a question; shared by the extractive answerer and citation repair."""

    def __init__(self, encoder: LexicalEncoder) -> None:
        self.encoder = encoder
        # The same passages come back for many questions: analyse each sentence once (this was
        # most of an answer's CPU time, measured with cProfile).
        self._features = lru_cache(maxsize=50_000)(encoder.features)
        self._skeletons = lru_cache(maxsize=50_000)(encoder.skeletons)

    def _query_features(self, question: str) -> tuple[set[str], set[str]]:
        terms, grams = self.encoder.features(question)
        return set(terms), set(grams)

    def _anchors(self, question: str) -> list[str]:
        """What a question can share with text in the other script: names (as consonant
        skeletons) and numbers."""
        digits = [t for t in self.encoder.features(question)[0] if t.isdigit()]
        return [f"k:{sk}" for sk in name_skeletons(question)] + [f"t:{d}" for d in digits]

    def score(self, question: str, sentences: list[Sentence]) -> None:
        """Coverage of the question by each sentence, 0..1, stored in ``Sentence.score``.

        A sentence in the question's script is scored on all the question's words,
        weighted by rarity among the candidates. A sentence in the other script
        (an English question, an Arabic article) can only share names and numbers,
        so it is scored on those: the share of them it contains.
        """
        q_terms, q_grams = self._query_features(question)
        q_arabic = detect_language(question) == "ar"
        anchors: list[str] | None = None
        feats = [self._features(s.text) for s in sentences]
        n = len(sentences) or 1
        df_t: Counter[str] = Counter()
        df_g: Counter[str] = Counter()
        for terms, grams in feats:
            df_t.update(set(terms) & q_terms)
            df_g.update(set(grams) & q_grams)
        w_t = {t: math.log(1 + n / (df_t[t] + 0.5)) for t in q_terms}
        w_g = {g: math.log(1 + n / (df_g[g] + 0.5)) for g in q_grams}
        tot_t, tot_g = sum(w_t.values()), sum(w_g.values())
        for s, (terms, grams) in zip(sentences, feats, strict=True):
            if (detect_language(s.text) == "ar") != q_arabic:
                if anchors is None:
                    anchors = self._anchors(question)
                have = {f"t:{t}" for t in terms} | {f"k:{k}" for k in self._skeletons(s.text)}
                s.score = sum(a in have for a in anchors) / len(anchors) if anchors else 0.0
                if len(anchors) == 1:  # one three-consonant skeleton matches by chance too often
                    s.score *= 0.7
                continue
            cov_t = sum(w_t[t] for t in q_terms.intersection(terms)) / tot_t if tot_t else 0.0
            cov_g = sum(w_g[g] for g in q_grams.intersection(grams)) / tot_g if tot_g else 0.0
            s.score = (1 - _GRAM_SHARE) * cov_t + _GRAM_SHARE * cov_g if tot_t else cov_g


def passage_sentences(passages: list[Passage]) -> list[Sentence]:
    out = []
    for p in passages:
        for start, end in p.sentences or [(0, len(p.text))]:
            out.append(Sentence(p, start, end, p.text[start:end]))
    return out


class ExtractiveAnswerer:
    def __init__(self, encoder: LexicalEncoder, settings: AnswerSettings) -> None:
        self.scorer = SentenceScorer(encoder)
        self.settings = settings

    def select(self, question: str, passages: list[Passage]) -> Selection:
        sentences = [s for s in passage_sentences(passages) if len(s.text.split()) >= 3]
        if not sentences:
            return Selection([], 0.0)
        self.scorer.score(question, sentences)
        # Retrieval rank breaks ties between equally covering sentences.
        rank = {p.chunk_id: i for i, p in enumerate(passages)}
        titles = {fold(p.title) for p in passages}
        for s in sentences:
            s.score *= 1.0 - 0.03 * rank[s.passage.chunk_id]
            if fold_cached(s.text) in titles:  # a headline repeated in the body says little
                s.score *= 0.8
            if not answer_type_ok(question, s.text):
                s.score *= 0.5
        ranked = sorted(sentences, key=lambda s: -s.score)
        best = ranked[0].score
        chosen: list[Sentence] = []
        seen: set[str] = set()
        for s in ranked:
            key = fold_cached(s.text)
            if key in seen or s.score < 0.6 * best or s.score <= 0:
                continue
            seen.add(key)
            chosen.append(s)
            if len(chosen) == self.settings.max_sentences:
                break
        return Selection(chosen, best)

    def floor(self, question: str, selection: Selection) -> float:
        """The support an answer needs: across scripts it is measured differently (see ``score``)."""
        best = selection.sentences[0].text if selection.sentences else question
        cross = detect_language(best) != detect_language(question)
        return self.settings.min_support_cross if cross else self.settings.min_support

    def answerable(self, question: str, selection: Selection) -> bool:
        return bool(selection.sentences) and selection.support >= self.floor(question, selection)
