"""The offline answerer: picks the retrieved sentences that best answer the question.

No generative model. Each candidate sentence gets two signals:

- **words**: how much of the question's weighted vocabulary it covers (stems, plus character
  n-grams for names and spelling variants; weights are inverse frequencies among the candidates,
  so words every passage shares, like غزة, count little). Across scripts (an English question,
  an Arabic article) only names (consonant skeletons), numbers and, with the English–Arabic
  dictionary (:mod:`rag.bilingual`), translated words can be shared.
- **meaning**: the cosine between the question's and the sentence's vectors from the multilingual
  encoder, read from the vector cache (sentence vectors are computed at index time). This is what
  lets an English question find the Arabic sentence that answers it.

They are combined with weights fitted on a development split (``evals/calibrate.py``). A sentence
that lacks what the question asks for (a number for "how many", a date for "when", see
:mod:`rag.answer_types`) is marked down; headings are never quoted while a real sentence
answers; a second or third sentence is quoted only when it scores close to the best. Whether the
articles hold the answer at all is a logistic model over the selection's signals (:data:`SIGNALS`),
fitted on dev splits; without the encoder, a floor on the best sentence's support.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from rag.answer_types import answer_strength
from rag.bilingual import Dictionary
from rag.embedding import CachedEmbedder, EmbeddingError
from rag.lexical import LexicalEncoder
from rag.models import Citation, Passage
from rag.reader import CrossReader
from rag.settings import AnswerSettings
from rag.text import _stopwords, detect_language, fold, fold_cached
from rag.translit import name_skeletons

log = logging.getLogger(__name__)

_GRAM_SHARE = 0.35
# A line that ends without sentence punctuation is a heading (news sections, titles, datelines).
_ENDS_SENTENCE = re.compile(r"[.!?؟؛:…»\"”)\]]\s*$")
_HEADING_MAX_WORDS = 16
_LIST_MARK = re.compile(r"^\s*(?:[•\-*–·▪◦]|\(?[0-9٠-٩]+[.)\-]|\(?[a-zأ-ي][.)])\s*")
_LIST_MAX_LINES = 8
_REPEAT_PENALTY = 0.8
_CONTEXT_SHARE = 0.3


def _line_at(text: str, pos: int) -> tuple[int, int]:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return start, len(text) if end < 0 else end


def _bare_line(line: str) -> bool:
    """A short line that does not end like a sentence: a heading, a table row or a list item."""
    line = line.strip()
    return bool(line) and not _ENDS_SENTENCE.search(line) and len(line.split()) <= _HEADING_MAX_WORDS


def _neighbour_lines(text: str, line_start: int, line_end: int) -> tuple[str, str]:
    before = text[:line_start].rstrip("\n\r ").rsplit("\n", 1)[-1] if line_start else ""
    after = text[line_end:].lstrip("\n\r ").split("\n", 1)[0] if line_end < len(text) else ""
    return before, after


def is_heading(passage_text: str, start: int, end: int) -> bool:
    """Whether the span is a heading: a line of its own that does not end like a sentence, with no list
    marker, and not one of a block of such lines (those are table rows or list items, which hold facts)."""
    text = passage_text[start:end].strip()
    if text.startswith("#"):
        return True
    line_start, line_end = _line_at(passage_text, start)
    if passage_text[line_start:line_end].strip() != text or not _bare_line(text) or _LIST_MARK.match(text):
        return False
    before, after = _neighbour_lines(passage_text, line_start, line_end)
    return not (_bare_line(before) and _bare_line(after)) and not _LIST_MARK.match(after.strip())


def list_after(passage_text: str, end: int) -> int:
    """Where the list or table that a sentence ending in ":" announces ends (``end`` if none follows)."""
    if not passage_text[:end].rstrip().endswith((":", "：")):
        return end
    pos, last, lines = end, end, 0
    while lines < _LIST_MAX_LINES:
        nxt = passage_text[pos:].lstrip("\n\r ")
        if not nxt:
            break
        line_start = len(passage_text) - len(nxt)
        line_end = passage_text.find("\n", line_start)
        line_end = len(passage_text) if line_end < 0 else line_end
        line = passage_text[line_start:line_end].strip()
        if not (_LIST_MARK.match(line) or _bare_line(line)):
            break
        last, pos, lines = line_start + len(passage_text[line_start:line_end].rstrip()), line_end, lines + 1
    return last


@dataclass
class Sentence:
    passage: Passage
    start: int  # relative to passage.text
    end: int
    text: str
    score: float = 0.0
    lexical: float = 0.0  # word coverage (or, across scripts, shared names and numbers), 0..1
    semantic: float | None = None  # cosine with the question, when an encoder is configured
    cross: bool = False  # in the other script than the question
    # An Arabic sentence for an English question: the cross-script case the answerer's weights were fitted on
    # (an Arabic question meeting a Latin-script line, a byline or a code, is weighed as within one script).
    over_arabic: bool = False
    heading: bool = False
    type_ok: bool = True
    type_strong: bool = True  # an explicit date for "when" (not only a weekday or "yesterday")
    passage_words: float = 0.0  # word coverage of the question by the sentence's whole passage
    read: float | None = None  # the reader's logit (rag/reader.py), for the sentences it read

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
            date=p.date,
            source=p.source,
            url=p.url,
        )


@dataclass
class Selection:
    sentences: list[Sentence]
    support: float  # combined score of the best sentence, 0..1
    cross: bool = False  # the best sentence is in the other script than the question
    # With the encoder: what the refusal model weighs (:data:`SIGNALS`, in that order).
    signals: tuple[float, ...] = ()
    # The parts of a compound question that the articles do not answer (the others are answered).
    unanswered: list[str] = field(default_factory=list)
    # The retrieved passages (chunk ids) in the answerer's reading order: those it quotes, in the order quoted,
    # then the others by their best sentence as it ranked them (the reader's probability weighed in where it read).
    order: list[str] = field(default_factory=list)

    def in_order(self, passages: list[Passage]) -> list[Passage]:
        """``passages`` re-ranked by reading: the selection's order first, then the rest as retrieved."""
        rank = {c: i for i, c in enumerate(self.order)}
        return sorted(passages, key=lambda p: rank.get(p.chunk_id, len(rank)))  # stable: the rest as retrieved

    @property
    def read(self) -> bool:
        """Judged with the reader's signals too (:data:`READ_SIGNALS`)."""
        return len(self.signals) == len(SIGNALS) + len(READ_SIGNALS)


# Whether the articles hold the answer, with the encoder, is judged on these (a logistic model fitted on
# dev splits, evals/calibrate.py): the best sentence's support, words and meaning; the most any sentence
# has of each; whether the sentence that best matches the words is the one that best matches the meaning
# (and the same article): they disagree when nothing really answers; the words held by the closest
# sentence in meaning; the lead of the best sentence over the next; whether it holds what is asked for;
# how much of the question the best sentence's passage holds, and the most any passage holds.
SIGNALS = ("support", "best_words", "best_meaning", "most_words", "most_meaning", "agree", "agree_article",
           "words_at_meaning", "lead", "type_ok", "passage_words", "most_passage_words")
# With the reader, more: its logit for the best sentence, and the most it gives any sentence it read; the
# words, meaning, answer type and passage words of the sentence it finds most answering (a reader and the
# signals pointing at one sentence with the asked-for thing is an answer; a reader sure of a sentence that
# shares nothing with the question is not).
READ_SIGNALS = ("best_read", "most_read", "read_words", "read_meaning", "read_type_ok", "read_passage_words")


def _signals(best: Sentence, support: float, sentences: list[Sentence], ranked: list[Sentence]) -> tuple[float, ...]:
    scored = [s for s in sentences if s.semantic is not None]
    by_words = max(scored, key=lambda s: s.lexical)
    by_meaning = max(scored, key=lambda s: s.semantic or 0.0)
    runner_up = next((s.score for s in ranked[1:] if fold_cached(s.text) != fold_cached(best.text)), 0.0)
    return (support, best.lexical, best.semantic or 0.0, by_words.lexical, by_meaning.semantic or 0.0,
            float(by_words is by_meaning), float(by_words.passage.doc_id == by_meaning.passage.doc_id),
            by_meaning.lexical, best.score - runner_up, float(best.type_ok), best.passage_words,
            max(s.passage_words for s in sentences))


def _read_signals(best: Sentence, sentences: list[Sentence]) -> tuple[float, ...]:
    read = [s for s in sentences if s.read is not None]
    top = max(read, key=lambda s: s.read or 0.0)
    return (best.read if best.read is not None else min(s.read or 0.0 for s in read), top.read or 0.0,
            top.lexical, top.semantic or 0.0, float(top.type_ok), top.passage_words)


class SentenceScorer:
    """Scores sentences against a question; shared by the extractive answerer and citation repair."""

    def __init__(self, encoder: LexicalEncoder, dictionary: Dictionary | None = None) -> None:
        self.encoder = encoder
        self.dictionary = dictionary
        # The same passages come back for many questions: analyse each sentence once (this was
        # most of an answer's CPU time, measured with cProfile).
        self._features = lru_cache(maxsize=50_000)(encoder.features)
        self._skeletons = lru_cache(maxsize=50_000)(encoder.skeletons)

    def _query_features(self, question: str) -> tuple[dict[str, None], dict[str, None]]:
        """The question's distinct terms and grams, in the order they occur: weights are summed in that order,
        so a score does not depend on the process's string-hash seed (a set's order does, and a sum's last
        bit with it, which was enough to flip near-ties between runs)."""
        terms, grams = self.encoder.features(question)
        return dict.fromkeys(terms), dict.fromkeys(grams)

    def _anchors(self, question: str) -> list[str]:
        """What a question can share with text in the other script: names (as consonant
        skeletons) and numbers."""
        digits = [t for t in self.encoder.features(question)[0] if t.isdigit()]
        return [f"k:{sk}" for sk in name_skeletons(question)] + [f"t:{d}" for d in digits]

    def _cross_units(self, question: str) -> list[tuple[frozenset[str], ...]]:
        """What a question can share with text in the other script, each unit a set of alternatives, each
        alternative the features a sentence must all hold: names (consonant skeletons), numbers and, with
        the dictionary, the Arabic equivalents of an English question's content words."""
        units: list[tuple[frozenset[str], ...]] = [(frozenset({a}),) for a in self._anchors(question)]
        if self.dictionary is not None and detect_language(question) == "en":
            for _, translations in self.dictionary.question_words(question, _stopwords()):
                units.append(tuple(frozenset(f"t:{t}" for t in alt) for alt in translations))
        return units

    def score(self, question: str, sentences: list[Sentence]) -> None:
        """Coverage of the question by each sentence, 0..1, stored in ``Sentence.score``.

        A sentence in the question's script is scored on all the question's words,
        weighted by rarity among the candidates. A sentence in the other script
        (an English question, an Arabic article) can only share names, numbers and
        (with the dictionary) translated words, so it is scored on those, weighted the same way.
        """
        q_terms, q_grams = self._query_features(question)
        q_arabic = detect_language(question) == "ar"
        feats = [self._features(s.text) for s in sentences]
        distinct = [(set(terms), set(grams)) for terms, grams in feats]
        n = len(sentences) or 1
        df_t: Counter[str] = Counter()
        df_g: Counter[str] = Counter()
        for have_t, have_g in distinct:
            df_t.update(have_t.intersection(q_terms))
            df_g.update(have_g.intersection(q_grams))
        w_t = {t: math.log(1 + n / (df_t[t] + 0.5)) for t in q_terms}
        w_g = {g: math.log(1 + n / (df_g[g] + 0.5)) for g in q_grams}
        tot_t, tot_g = sum(w_t.values()), sum(w_g.values())
        cross = [(detect_language(s.text) == "ar") != q_arabic for s in sentences]
        if any(cross):
            self._score_cross(question, [(s, f) for s, f, c in zip(sentences, feats, cross, strict=True) if c])
        for s, (have_t, have_g), c in zip(sentences, distinct, cross, strict=True):
            if c:
                continue
            cov_t = sum(w_t[t] for t in q_terms if t in have_t) / tot_t if tot_t else 0.0
            cov_g = sum(w_g[g] for g in q_grams if g in have_g) / tot_g if tot_g else 0.0
            s.score = (1 - _GRAM_SHARE) * cov_t + _GRAM_SHARE * cov_g if tot_t else cov_g

    def _score_cross(self, question: str, pairs: list[tuple[Sentence, tuple[list[str], list[str]]]]) -> None:
        units = self._cross_units(question)
        if not units:
            for s, _ in pairs:
                s.score = 0.0
            return
        held = []
        for s, (terms, _) in pairs:
            have = {f"t:{t}" for t in terms} | {f"k:{k}" for k in self._skeletons(s.text)}
            held.append([any(_holds(alt, have) for alt in unit) for unit in units])
        n = len(pairs)
        weights = [math.log(1 + n / (sum(h[i] for h in held) + 0.5)) for i in range(len(units))]
        total = sum(weights)
        for (s, _), h in zip(pairs, held, strict=True):
            s.score = sum(w for w, ok in zip(weights, h, strict=True) if ok) / total
            if len(units) == 1 and next(iter(units[0][0])).startswith("k:"):
                s.score *= 0.7  # one three-consonant skeleton matches by chance too often


def _holds(alternative: frozenset[str], have: set[str]) -> bool:
    """Whether a sentence's features hold each of ``alternative``'s: exactly, or (a dictionary translation's
    stem, four letters or more) inside a longer word: Snowball's light stemmer leaves many affixes on
    (ممثل in الممثلين, احتجاج in والاحتجاجات)."""
    for f in alternative:
        if f in have:
            continue
        if not (f.startswith("t:") and len(f) >= 6 and any(f[2:] in h for h in have if h.startswith("t:"))):
            return False
    return True


def passage_sentences(passages: list[Passage]) -> list[Sentence]:
    out = []
    for p in passages:
        for start, end in p.sentences or [(0, len(p.text))]:
            out.append(Sentence(p, start, end, p.text[start:end], heading=is_heading(p.text, start, end)))
    return out


def blend(own: list[Sentence], carried: list[Sentence]) -> list[Sentence]:
    """A follow-up's candidates (``own``, scored on its own words) with a share of their scores on the
    standalone question (``carried``: the same sentences, in the same order). Returns ``own``, updated."""
    for s, c in zip(own, carried, strict=True):
        s.lexical = (1 - _CONTEXT_SHARE) * s.lexical + _CONTEXT_SHARE * c.lexical
        s.passage_words = (1 - _CONTEXT_SHARE) * s.passage_words + _CONTEXT_SHARE * c.passage_words
        if s.semantic is not None and c.semantic is not None:
            s.semantic = (1 - _CONTEXT_SHARE) * s.semantic + _CONTEXT_SHARE * c.semantic
    return own


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 40.0), -40.0)))


class ExtractiveAnswerer:
    def __init__(self, encoder: LexicalEncoder, settings: AnswerSettings, embedder: CachedEmbedder | None = None,
                 dictionary: Dictionary | None = None, reader: CrossReader | None = None,
                 load_reader: Callable[[], CrossReader | None] | None = None) -> None:
        self.scorer = SentenceScorer(encoder, dictionary)
        self.settings = settings
        self.embedder = embedder
        self.reader = reader
        # The reader is loaded when first needed (about 0.5 s and 160 MB): `sanad index` never needs it.
        self._load_reader = load_reader
        self._loading = threading.Lock()

    def loaded_reader(self) -> CrossReader | None:
        """The reader, loaded on first use (``None``: off, or it could not be loaded)."""
        if self.reader is None and self._load_reader is not None:
            with self._loading:
                if self._load_reader is not None:
                    self.reader, self._load_reader = self._load_reader(), None
        return self.reader

    def read(self, question: str, sentences: list[Sentence], passages: list[Passage], already_said: str = "",
             focus: frozenset[str] = frozenset()) -> None:
        """The reader reads the question against the sentences the signals rank highest (``reader_candidates``
        distinct ones: reading all of five passages' sentences would not fit the latency budget) and sets their
        ``read``. A reader that fails leaves them unread: the answer falls back to the signals."""
        if not any(s.semantic is not None for s in sentences) or not self.reads(sentences):
            return  # without the encoder's signals the reader is not weighed in (nothing was fitted for it)
        reader = self.loaded_reader()
        if reader is None:
            return
        for s in sentences:
            s.read = None
        self.combine(sentences, passages, already_said, focus)
        chosen: dict[str, list[Sentence]] = {}
        for s in sorted(sentences, key=lambda s: -s.score):
            key = fold_cached(s.text)
            if key not in chosen and len(chosen) >= self.settings.reader_candidates:
                continue
            chosen.setdefault(key, []).append(s)
        texts = [group[0].text for group in chosen.values()]
        if not texts:
            return
        try:
            logits = reader.score(question, texts)
        except Exception:  # a broken model file, onnxruntime failing: answer on the signals
            log.warning("the reader failed; answering on the signals alone", exc_info=True)
            return
        for group, logit in zip(chosen.values(), logits, strict=True):
            for s in group:
                s.read = float(logit)

    def reads(self, sentences: list[Sentence]) -> bool:
        """Whether the reader reads a question's candidates. An English question over Arabic articles (most of its
        candidates Arabic) only where the reader was fitted in for them (for reader-cross-1 it was not: on dev it
        did not help them, docs/reader.md); they then cost no reading."""
        a = self.settings
        if a.reader_weight_cross > 0 or self._stacked(cross=True) or a.read_floor_cross is not None:
            return True
        return sum(s.over_arabic for s in sentences) * 2 <= len(sentences)

    def candidates(
        self,
        question: str,
        passages: list[Passage],
        query_vector: list[float] | None,
        context: tuple[str, list[float] | None] | None = None,
    ) -> list[Sentence]:
        """Every sentence of the passages with its signals (words, meaning, answer type, heading).

        ``context``: for a follow-up, the question made standalone (and its vector). Sentences are then
        judged mostly on what the follow-up itself asks ("and who represented Turkey?"), partly on the
        carried context, which alone would pull the previous answer back."""
        if context is not None:
            return blend(self.candidates(question, passages, query_vector),
                         self.candidates(context[0], passages, context[1]))
        sentences = [s for s in passage_sentences(passages) if len(s.text.split()) >= 3]
        if not sentences:
            return []
        whole = [Sentence(p, 0, len(p.text), p.text) for p in passages]
        self.scorer.score(question, whole)
        covered = {w.passage.chunk_id: w.score for w in whole}
        self.scorer.score(question, sentences)
        q_arabic = detect_language(question) == "ar"
        for s in sentences:
            s.lexical = s.score
            s.passage_words = covered[s.passage.chunk_id]
            s.cross = (detect_language(s.text) == "ar") != q_arabic
            s.over_arabic = s.cross and not q_arabic
            strength = answer_strength(question, s.text)
            s.type_ok, s.type_strong = strength > 0, strength == 2
        calibrated = self.embedder is not None and self.embedder.signature == self.settings.semantic_for
        if query_vector is not None and self.embedder is not None and calibrated:
            try:
                vectors = self.embedder.vectors([s.text for s in sentences])
            except EmbeddingError:
                vectors = None
            if vectors is not None:
                sims = vectors @ np.asarray(query_vector, dtype=np.float32)
                for s, sim in zip(sentences, sims, strict=True):
                    s.semantic = float(sim)
        return sentences

    def combine(self, sentences: list[Sentence], passages: list[Passage], already_said: str = "",
                focus: frozenset[str] = frozenset()) -> Selection:
        """Score the candidates with the calibrated weights and choose the quoted sentences.

        ``already_said``: the conversation's previous answer. A follow-up asks for something new, so a
        sentence quoted there is marked down. ``focus``: the documents that answer cited; a follow-up's
        further sentences come from them ("who inaugurated it?" is about that article's subject)."""
        if not sentences:
            return Selection([], 0.0)
        said = fold(already_said) if already_said else ""
        a = self.settings
        semantic = any(s.semantic is not None for s in sentences)
        reading = semantic and any(s.read is not None for s in sentences)
        type_penalty = a.type_penalty if semantic else a.lexical_type_penalty
        rank = {p.chunk_id: i for i, p in enumerate(passages)}
        titles = {t for p in passages if (t := fold(p.title))}
        for s in sentences:
            if s.semantic is None:
                score = s.lexical
            else:
                if s.over_arabic:
                    lo, hi, w = a.cross_semantic_floor, a.cross_semantic_ceiling, a.cross_semantic_weight
                else:
                    lo, hi, w = a.semantic_floor, a.semantic_ceiling, a.semantic_weight
                meaning = min(1.0, max(0.0, (s.semantic - lo) / (hi - lo)))
                score = w * meaning + (1 - w) * s.lexical
            score *= 1.0 - 0.03 * rank[s.passage.chunk_id]  # retrieval rank breaks ties
            # A headline repeated in the body says little, nor does a piece of one (a title such as
            # "With 4 countries .. an online meeting on the second phase" splits at its "..").
            folded = fold_cached(s.text)
            if folded and any(folded in t for t in titles):
                s.heading = True
            if not s.type_ok:
                score *= type_penalty
            if said and fold_cached(s.text) in said:
                score *= _REPEAT_PENALTY
            s.score = score
        # Headings are quoted only when no real sentence answers: when a heading is the only line that
        # holds what the question asks for (a dateline may be the only place with the date), or when no
        # other sentence says anything at all.
        said_something = [s for s in sentences if s.score > 0]
        body = [s for s in said_something if not s.heading]
        if any(s.type_strong for s in body) or not any(s.type_strong for s in said_something):
            pool = body or sentences
        else:
            pool = said_something
        ranked = sorted(pool, key=lambda s: -s.score)
        if reading:
            # The reader reorders the sentences it read: its probability that each says the answer is weighed
            # into their order. The scores stay the signals' own, so what was fitted on them (the further
            # sentences' share of the best, the refusal signals) reads them as it always did.
            def order(s: Sentence) -> float:
                r = a.reader_weight_cross if s.over_arabic else a.reader_weight
                return (1 - r) * s.score + r * _sigmoid(s.read) if s.read is not None else s.score

            ranked.sort(key=lambda s: -order(s))
        best = ranked[0]
        extra_ratio = (a.extra_ratio_cross if best.cross else a.extra_ratio) if semantic else a.lexical_extra_ratio
        other_ratio = (a.extra_ratio_other_cross if best.cross else a.extra_ratio_other) if semantic else 0.0
        chosen: list[Sentence] = []
        seen: set[str] = set()
        floor = extra_ratio * best.score * (type_penalty if not best.type_ok else 1.0)
        weak_best = best.type_ok and not best.type_strong
        for s in ranked:
            key = fold_cached(s.text)
            if key in seen or s.score <= 0:
                continue
            # A further sentence must come close to the best and hold what the question asks for. When the best
            # one lacks it ("which company…", and no company named), a sentence that holds it is what the answer
            # still needs: for it, the best one's lead is discounted by the type penalty once more.
            if chosen and s.score < floor:
                # When the best one holds what is asked for only weakly (a weekday for "when", "officials"
                # for "who"), a sentence that holds it fully (a date, a name) is discounted the same way.
                if s.score < (floor * type_penalty if weak_best else floor):
                    if reading:
                        continue  # in the reader's order a lower one may still come close
                    break  # nothing ranked lower can come close enough
                if not s.type_strong:
                    continue
            if chosen and not s.type_ok:
                continue
            if chosen and s.passage.doc_id != best.passage.doc_id and s.score < other_ratio * best.score:
                continue
            if chosen and focus and best.passage.doc_id in focus and s.passage.doc_id not in focus:
                continue
            seen.add(key)
            chosen.append(s)
            if len(chosen) == a.max_sentences:
                break
        for s in chosen:  # "…as follows:" is quoted with the list or table it announces
            end = list_after(s.passage.text, s.end)
            if end > s.end:
                s.end, s.text = end, s.passage.text[s.start : end]
        # A row of that table or list, chosen on its own, is already quoted with it.
        chosen = [s for s in chosen if not any(
            t.passage.chunk_id == s.passage.chunk_id and t.start <= s.start and s.end <= t.end
            and (t.start, t.end) != (s.start, s.end)
            for t in chosen)]
        support = best.score
        if semantic and not best.type_ok:
            # Whether the articles hold the answer: the best sentence lacks the kind of thing asked for.
            support *= a.missing_type_support / type_penalty if type_penalty else 0.0
        signals = _signals(best, support, sentences, ranked) if semantic and best.semantic is not None else ()
        if signals and reading:
            signals += _read_signals(best, sentences)
        in_pool = {id(s) for s in pool}
        rest = sorted((s for s in sentences if id(s) not in in_pool), key=lambda s: -s.score)  # headings last
        passages_read = list(dict.fromkeys(s.passage.chunk_id for s in [*chosen, *ranked, *rest]))
        return Selection(chosen, support, cross=best.cross, signals=signals, order=passages_read)

    def select(
        self,
        question: str,
        passages: list[Passage],
        query_vector: list[float] | None = None,
        already_said: str = "",
        context: tuple[str, list[float] | None] | None = None,
        focus: frozenset[str] = frozenset(),
    ) -> Selection:
        if context is None:
            sentences = self.candidates(question, passages, query_vector)
            self.read(question, sentences, passages, already_said, focus)
            return self.combine(sentences, passages, already_said, focus)
        carried = self.candidates(context[0], passages, context[1])
        own = blend(self.candidates(question, passages, query_vector), carried)
        # The reader reads a follow-up made standalone: its own words ("and when?") name nothing.
        self.read(context[0], own, passages, already_said, focus)
        for c, o in zip(carried, own, strict=True):
            c.read = o.read
        selection = self.combine(own, passages, already_said, focus)
        if selection.sentences:
            # Whether the articles hold the answer is judged on the standalone question too: a follow-up's
            # own words ("and when?") are few, and alone they would make almost any answer look unsupported.
            standalone = self.combine(carried, passages, already_said)
            if self.margin(standalone) > self.margin(selection):
                selection.signals = standalone.signals
            selection.support = max(selection.support, standalone.support)
        return selection

    def merge(self, parts: list[tuple[str, Selection]]) -> Selection:
        """One selection for a compound question: the sentences answering each answered part (as many as
        a question of its own would get), in the order the parts were asked, judged answerable on the part
        it is surest of; the parts the articles do not answer named.

        Not cut to one question's length: on the seeds dev split, giving each part its best sentence and
        the rest in turn within ``max_sentences`` kept fact recall and lowered citation precision."""
        judged = [(q, s, self.answerable(s)) for q, s in parts]
        answered = [s for _, s, ok in judged if ok]
        if not answered:
            return max((s for _, s in parts), key=self.margin)
        surest = max(answered, key=self.margin)
        sentences, seen = [], set()
        for s in answered:
            for sentence in s.sentences:
                if (key := fold_cached(sentence.text)) not in seen:
                    seen.add(key)
                    sentences.append(sentence)
        # Passages: those quoted, then each part's own order in turn.
        order = [*(s.passage.chunk_id for s in sentences), *(c for _, s in parts for c in s.order)]
        return Selection(sentences, surest.support, cross=surest.cross, signals=surest.signals,
                         unanswered=[q for q, _, ok in judged if not ok], order=list(dict.fromkeys(order)))

    def floor(self, selection: Selection) -> float:
        """The support an answer needs (calibrated; across scripts and without meaning it differs)."""
        semantic = any(s.semantic is not None for s in selection.sentences)
        if not semantic:
            return self.settings.min_support_cross if selection.cross else self.settings.min_support
        return self.settings.min_support_cross_dense if selection.cross else self.settings.min_support_dense

    def margin(self, selection: Selection) -> float:
        """How far the selection is on the answering side of the refusal line (negative: refuse). With the reader,
        a second logistic model stacked on the signals' margin: the signals' model was fitted on far more dev
        items than the reader left unseen (it trained on most of XQuAD), so only a few weights are fitted for it."""
        base = self._signals_margin(selection)
        floor = self.settings.read_floor_cross if selection.cross else self.settings.read_floor_same
        if selection.read and floor is not None and selection.signals[len(SIGNALS) + 1] < floor:
            return -math.inf  # the reader finds no sentence it read saying the answer: refused
        model = self._stacked(selection.cross) if selection.read else []
        if model:
            return float(model[0] * base + np.dot(model[1:-1], selection.signals[len(SIGNALS):]) + model[-1])
        return base

    def _stacked(self, cross: bool) -> list[float]:
        """The stacked refusal model for the script case (``refusal_read_*``), or ``[]`` when none is set."""
        model = self.settings.refusal_read_cross if cross else self.settings.refusal_read_same
        return model if len(model) == len(READ_SIGNALS) + 2 else []

    def _signals_margin(self, selection: Selection) -> float:
        model = self.settings.refusal_cross if selection.cross else self.settings.refusal_same
        if len(selection.signals) >= len(SIGNALS) and len(model) == len(SIGNALS) + 1:
            return float(np.dot(model[:-1], selection.signals[: len(SIGNALS)]) + model[-1])
        return selection.support - self.floor(selection)

    def answerable(self, selection: Selection) -> bool:
        return bool(selection.sentences) and self.margin(selection) >= 0

    def sure(self, selection: Selection) -> bool:
        """Whether an answerable selection is clear of the refusal line by the calibrated hedge margin. Without
        the encoder's signals it is not judged (the margin is on another scale): sure."""
        if not selection.signals:
            return True
        a = self.settings
        if selection.read and self._stacked(selection.cross):  # the margin is the stacked model's: its own hedge
            hedge = a.hedge_read_cross if selection.cross else a.hedge_read_same
        else:
            hedge = a.hedge_cross if selection.cross else a.hedge_same
        return self.margin(selection) >= hedge
