"""Sanad's answering path: rewrite a follow-up, retrieve, answer, check citations.

:class:`Sanad` is built from an explicit :class:`Settings` (``Sanad.open``);
``ask`` returns an :class:`Answer`, ``stream`` yields the same answer as events
(passages first, then text deltas, then the final answer).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any, Literal

from rag.bilingual import load_dictionary
from rag.citations import MarkerChecker, StreamTidy, tidy, unmark
from rag.conversation import carry_context
from rag.embedding import CachedEmbedder, build_embedder
from rag.extractive import ExtractiveAnswerer, Selection, Sentence, SentenceScorer
from rag.gloss import english_facts
from rag.lexical import LexicalEncoder
from rag.llm import NO_ANSWER, LLMClient, LLMError, answer_messages, rewrite_messages
from rag.messages import answer_intro, refusal, unanswered_part
from rag.models import AlsoIn, Answer, Citation, Language, Passage, SearchFilters, Turn
from rag.questions import standalone_parts
from rag.reader import CrossReader, load_reader
from rag.retrieval import Retriever
from rag.sentences import sentence_spans
from rag.settings import Settings
from rag.store import PassageStore, open_client
from rag.text import detect_language, fold

log = logging.getLogger("sanad")

# With an LLM, the offline coverage threshold only screens out hopeless
# retrievals; the model judges the rest.
_LLM_SCREEN = 0.5
# An answer sentence is tied to a passage sentence it covers this much of.
_REPAIR_MIN = 0.35
# A follow-up's passages from the documents the previous answer cited win close calls by this factor.
_FOLLOW_UP_BOOST = 1.1
_ALSO_IN_MAX = 10  # copies named per citation
_CARRIES_SHARE = 0.8  # of the quote's words found in one chunk of a copy: the same passage, lightly edited


def _carries(chunks: list[str], quote: str) -> bool:
    """Whether an article (its folded chunks) holds ``quote``, as is or lightly edited (most of its words, in
    one chunk)."""
    folded = fold(quote)
    words = set(folded.split())
    return bool(words) and any(
        folded in text or len(words & set(text.split())) >= _CARRIES_SHARE * len(words) for text in chunks)


def _claims(answer: str, n: int) -> list[str]:
    """What the answer says at each ``[n]``: the last sentence of the text before the marker.

    Markers often follow the full stop ("... 900 times. [1]"); taking the sentence that
    contains the marker would then give "[1]" alone (or the next sentence) as the claim.
    """
    claims: list[str] = []
    start, end, last = 0, 0, 0
    for m in re.finditer(r"\[(\d+)\]", answer):
        if answer[last : m.start()].strip():  # text since the previous marker; adjacent markers share it
            start, end = last, m.start()
        last = m.end()
        if int(m.group(1)) == n:
            text = answer[start:end]
            spans = sentence_spans(text)
            claims.append(text[spans[-1][0] : spans[-1][1]] if spans else text)
    return claims


@dataclass
class Event:
    kind: Literal["passages", "delta", "reset", "answer", "timings"]
    data: Any


@dataclass
class Timings:
    retrieval_ms: float = 0.0
    answer_ms: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


class Sanad:
    def __init__(
        self,
        settings: Settings,
        store: PassageStore,
        encoder: LexicalEncoder,
        embedder: CachedEmbedder | None,
        llm: LLMClient | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.encoder = encoder
        self.embedder = embedder
        self.retriever = Retriever(store, encoder, embedder, settings.retrieval)
        dictionary = load_dictionary(settings.answer.dictionary, lambda text: encoder.features(text)[0],
                                     cache=settings.data_dir / "dictionary.json")
        self.extractive = ExtractiveAnswerer(
            encoder, settings.answer, embedder, dictionary,
            load_reader=lambda: load_reader(settings.answer.reader, settings.embed.threads))
        self.scorer = SentenceScorer(encoder, dictionary)
        self.llm = llm

    @classmethod
    def open(cls, settings: Settings, rebuild: bool = False) -> Sanad:
        """Open (or create) the store and the configured components; ``rebuild`` empties the store first."""
        embedder = build_embedder(settings.embed, settings.vector_cache_path)
        r = settings.retrieval
        encoder = LexicalEncoder(gram_weight=r.gram_weight, k1=r.bm25_k1, b=r.bm25_b)
        store = PassageStore(
            open_client(settings),
            settings.qdrant.collection,
            settings.embed.signature,
            embedder.dimension if embedder else None,
            encoder.manifest(),
            reader=settings.answer.reader or "none",
        )
        try:
            if rebuild:
                store.drop()
            store.ensure()
        except Exception:
            store.close()
            if embedder is not None:
                embedder.close()
            raise
        llm = LLMClient(settings.llm) if settings.llm.enabled else None
        return cls(settings, store, encoder, embedder, llm)

    @property
    def reader(self) -> CrossReader | None:
        """The configured reader, loaded on first use (``None``: off, or it could not be loaded)."""
        return self.extractive.loaded_reader()

    def warm(self) -> None:
        """Load the encoder and the reader now rather than on the first question (``sanad serve`` at start-up)."""
        if self.embedder is not None:
            self.embedder.warm()
        _ = self.reader

    def close(self) -> None:
        self.store.close()
        if self.embedder is not None:
            self.embedder.close()

    # -- pieces ------------------------------------------------------------
    def search(self, query: str, top_k: int | None = None, filters: SearchFilters | None = None) -> list[Passage]:
        return self.retriever.search(query, top_k=top_k, filters=filters)

    def retrieve(
        self,
        query: str,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        prefer: list[str] | None = None,
    ) -> tuple[list[Passage], list[float] | None]:
        """The passages and the question's dense vector (``None`` without a working encoder).

        ``prefer``: documents the conversation's previous answer cited. A follow-up is looked for in them
        as well as everywhere, and their passages win close calls."""
        vector = self.retriever.query_vector(query)
        passages = self.retriever.search(query, top_k=top_k, filters=filters, query_vector=vector)
        if prefer:
            wanted = [d for d in prefer if not filters or not filters.doc_ids or d in filters.doc_ids]
            scoped = (filters or SearchFilters()).model_copy(update={"doc_ids": wanted})
            extra = self.retriever.search(query, top_k=top_k, filters=scoped, query_vector=vector) if wanted else []
            merged = {p.chunk_id: p for p in [*passages, *extra]}
            boost = {p.chunk_id: p.score * (_FOLLOW_UP_BOOST if p.doc_id in wanted else 1.0) for p in merged.values()}
            k = top_k or self.settings.retrieval.top_k
            passages = sorted(merged.values(), key=lambda p: -boost[p.chunk_id])[:k]
        return passages, vector

    def _previous_answer(self, history: list[Turn]) -> tuple[list[str], str, bool]:
        """The documents and text of the conversation's last answer, and whether those are the documents it
        cited (stored with it, or holding its verbatim quotes) rather than a guess. Without stored citations
        (a client that sends only messages), its documents are found by searching for the answer's own text."""
        last = next((t for t in reversed(history) if t.role == "assistant"), None)
        if last is None or not last.content.strip():
            return [], "", False
        docs = list(last.doc_ids)
        if not docs:
            # The answer quotes article sentences verbatim: the documents whose passages hold its quotes.
            quotes = [q.strip(" «»:\n") for q in re.split(r"\[\d+\]|«|»", last.content)]
            quotes = [fold(q) for q in quotes if len(q) > 30]
            found = self.retriever.search(last.content[:1000], top_k=8)
            docs = list(dict.fromkeys(p.doc_id for p in found if any(q in fold(p.text) for q in quotes)))
            if not docs:  # a paraphrase: the closest article, a guess
                return [p.doc_id for p in found[:1]], last.content, False
        return docs, last.content, True

    def rewrite(self, question: str, history: list[Turn]) -> tuple[str | None, bool]:
        """Standalone form of a follow-up (``None`` if it stands alone) and whether the LLM failed."""
        if not history:
            return None, False
        if self.llm is not None:
            try:
                text = self.llm.chat(rewrite_messages(question, history)).strip().splitlines()[0].strip()
                if text and text != question.strip():
                    return text, False
                return None, False
            except (LLMError, IndexError) as exc:
                log.warning("LLM rewrite failed, using the offline rule: %s", exc)
                return carry_context(question, history, self.encoder.analyzer), True
        return carry_context(question, history, self.encoder.analyzer), False

    # -- answering -----------------------------------------------------------
    def ask(
        self,
        question: str,
        history: list[Turn] | None = None,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
    ) -> Answer:
        return self.ask_timed(question, history, top_k, filters)[0]

    def ask_timed(
        self,
        question: str,
        history: list[Turn] | None = None,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
    ) -> tuple[Answer, Timings]:
        """The answer, and how long retrieval and answering took for this call."""
        answer, timings = None, Timings()
        for event in self.stream(question, history, top_k, filters, _whole=True):
            if event.kind == "answer":
                answer = event.data
            elif event.kind == "timings":
                timings = event.data
        assert isinstance(answer, Answer)
        return answer, timings

    def stream(
        self,
        question: str,
        history: list[Turn] | None = None,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        _whole: bool = False,
    ) -> Iterator[Event]:
        lang: Language = detect_language(question)  # type: ignore[assignment]
        t0 = time.perf_counter()
        rewritten, degraded = self.rewrite(question, history or [])
        query = rewritten or question
        prefer, said, cited = self._previous_answer(history or []) if rewritten else ([], "", False)
        parts = [] if rewritten else standalone_parts(question, self.encoder.analyzer)
        if len(parts) > 1:
            passages, selection = self._compound(parts, top_k, filters)
            t1 = time.perf_counter()
        else:
            passages, vector = self.retrieve(query, top_k=top_k, filters=filters, prefer=prefer)
            t1 = time.perf_counter()
            if rewritten:
                selection = self._follow_up(question, passages, said, (query, vector), prefer, cited)
            else:
                selection = self.extractive.select(query, passages, vector)
        # The passages re-ranked by reading: an LLM is shown (and numbers) first what the answerer found answering.
        passages = selection.in_order(passages)
        # A selection judged with the reader's signals was read, so the reader is loaded: naming it loads nothing.
        read_by = self.extractive.reader if selection.read else None
        base = {"language": lang, "rewritten_question": rewritten, "reader": read_by.name if read_by else None}
        floor = self.extractive.floor(selection)
        if self.llm is None or not passages or selection.support < floor * _LLM_SCREEN:
            yield from self._offline(query, selection, base, degraded)
        else:
            yield from self._with_llm(query, passages, selection, base, whole=_whole, degraded=degraded)
        # Per call (the service answers many questions at once): the last event, after the answer.
        yield Event("timings", Timings(retrieval_ms=(t1 - t0) * 1000, answer_ms=(time.perf_counter() - t1) * 1000))

    def _follow_up(self, question: str, passages: list[Passage], said: str,
                   context: tuple[str, list[float] | None], prefer: list[str], cited: bool) -> Selection:
        """Offline, a follow-up ("and when was it held?") is answered from the articles the previous answer
        cited, when those are known and hold an answer; otherwise from everything retrieved. Its own words
        are few and often match another story better ("held" in an article about another meeting)."""
        own = self.retriever.query_vector(question)
        focus = frozenset(prefer)
        scoped = [p for p in passages if p.doc_id in focus]
        if cited and scoped and len(scoped) < len(passages):
            selection = self.extractive.select(question, scoped, own, already_said=said, context=context, focus=focus)
            if self.extractive.answerable(selection):
                return selection
        return self.extractive.select(question, passages, own, already_said=said, context=context, focus=focus)

    def _compound(
        self, parts: list[str], top_k: int | None, filters: SearchFilters | None
    ) -> tuple[list[Passage], Selection]:
        """A compound question, part by part: each part's passages and answer on its own words. The
        passages (for an LLM) are the parts' in turn, as many as one question gets."""
        found = []
        for part in parts:
            passages, vector = self.retrieve(part, top_k=top_k, filters=filters)
            found.append((part, passages, self.extractive.select(part, passages, vector)))
        merged: dict[str, Passage] = {}
        for same_rank in zip_longest(*(ps for _, ps, _ in found)):
            for p in filter(None, same_rank):
                merged.setdefault(p.chunk_id, p)
        k = top_k or self.settings.retrieval.top_k
        return list(merged.values())[:k], self.extractive.merge([(q, s) for q, _, s in found])

    def _refusal(self, base: dict[str, Any], cross_script: bool = False, **extra: Any) -> Iterator[Event]:
        text = refusal(base["language"], cross_script)
        yield Event("passages", [])
        yield Event("delta", text)
        yield Event("answer", Answer(answer=text, answerable=False, **base, **extra))

    def _offline(self, query: str, selection: Selection, base: dict[str, Any], degraded: bool) -> Iterator[Event]:
        if not self.extractive.answerable(selection):
            # Without an encoder, a question in the other script is matched only on names and numbers: say so.
            cross = selection.cross and self.embedder is None and bool(selection.sentences)
            yield from self._refusal(base, cross_script=cross, degraded=degraded)
            return
        lang = base["language"]
        sure = self.extractive.sure(selection)
        citations = self._with_also_in([s.citation(i) for i, s in enumerate(selection.sentences, 1)],
                                       [s.passage for s in selection.sentences])
        yield Event("passages", citations)
        parts = []
        intro = answer_intro(lang, sure, any(detect_language(c.quote) == "ar" for c in citations))
        for i, c in enumerate(citations):
            # A quote is article text: "[99]" in it would read as a citation that does not exist.
            quote = f"«{unmark(c.quote)}»" if lang == "en" else unmark(c.quote)
            part = (intro if i == 0 else " ") + f"{quote} [{c.n}]"
            parts.append(part)
            yield Event("delta", part)
        if lang == "en":
            # What can be stated in English without a translation model: dates, numbers, Latin-script names.
            glossed = [(c.n, english_facts(c.quote)) for c in citations if detect_language(c.quote) == "ar"]
            facts = "; ".join(f"{', '.join(unmark(f) for f in fs)} [{n}]" for n, fs in glossed if fs)
            if facts:
                part = f" In English, the dates, figures and names it gives: {facts}."
                parts.append(part)
                yield Event("delta", part)
        for asked in selection.unanswered:
            part = "\n\n" + unanswered_part(lang, asked)
            parts.append(part)
            yield Event("delta", part)
        yield Event(
            "answer", Answer(answer="".join(parts), answerable=True, citations=citations, degraded=degraded,
                             confident=sure, **base)
        )

    def _with_llm(
        self,
        query: str,
        passages: list[Passage],
        selection: Selection,
        base: dict[str, Any],
        whole: bool,
        degraded: bool,
    ) -> Iterator[Event]:
        assert self.llm is not None
        messages = answer_messages(query, passages, base["language"])
        numbered = [self._passage_citation(i, p) for i, p in enumerate(passages, 1)]
        if whole:
            try:
                raw = self.llm.chat(messages)
            except LLMError as exc:
                log.warning("LLM failed, answering offline: %s", exc)
                yield from self._offline(query, selection, base, degraded=True)
                return
            yield from self._finish_llm(query, raw, passages, selection, base, degraded, streamed=False)
            return

        yield Event("passages", numbered)
        checker = MarkerChecker(len(passages))
        tidier = StreamTidy()  # the shown text is tidied as the final one is
        raw, held, emitted, shown = "", "", False, ""
        try:
            for delta in self.llm.stream(messages):
                if delta is None:  # RESTART: what came so far was the model's reasoning
                    if shown:
                        yield Event("reset", None)
                        yield Event("passages", numbered)
                    checker, tidier = MarkerChecker(len(passages)), StreamTidy()
                    raw, held, emitted, shown = "", "", False, ""
                    continue
                raw += delta
                if not emitted:
                    # Hold the first characters back until they cannot be the NO_ANSWER sentinel.
                    held += delta
                    start = held.lstrip()
                    if NO_ANSWER.startswith(start) or start.startswith(NO_ANSWER):
                        continue  # may be, or is, the refusal sentinel: show nothing yet
                    delta, held, emitted = held, "", True
                out = tidier.feed(checker.feed(delta))
                if out:
                    shown += out
                    yield Event("delta", out)
            tail = tidier.feed(checker.finish()) + tidier.finish()
            if tail:
                shown += tail
                yield Event("delta", tail)
        except LLMError as exc:
            log.warning("LLM stream failed, answering offline: %s", exc)
            if emitted:
                yield Event("reset", None)
            # After a reset the offline answer's own passages follow: its [n] are not the LLM's numbering.
            yield from self._offline(query, selection, base, degraded=True)
            return
        yield from self._finish_llm(query, raw, passages, selection, base, degraded, streamed=True, shown=shown)

    def _finish_llm(
        self,
        query: str,
        raw: str,
        passages: list[Passage],
        selection: Selection,
        base: dict[str, Any],
        degraded: bool,
        streamed: bool,
        shown: str = "",
    ) -> Iterator[Event]:
        if raw.strip().startswith(NO_ANSWER) or raw.strip().endswith(NO_ANSWER):
            text = refusal(base["language"])
            if streamed:
                yield from self._show(shown, text, [])
            yield Event("answer", Answer(answer=text, answerable=False, answerer="llm", degraded=degraded, **base))
            return
        checker = MarkerChecker(len(passages))
        text = tidy(checker.check(raw))
        if not checker.order:
            text = self._repair(text, passages, checker)
        if not checker.order:
            # Nothing the model said could be tied to a passage: do not pass it on.
            log.warning("LLM answer cites no passage; answering offline")
            if streamed:
                yield Event("reset", None)
            yield from self._offline(query, selection, base, degraded=True)
            return
        citations = self._with_also_in([self._quote(k, passages[k - 1], text) for k in sorted(checker.order)],
                                       passages)
        if not streamed:
            yield Event("passages", citations)
            yield Event("delta", text)
        else:  # markers were repaired: what was shown is not the answer
            yield from self._show(shown, text, passages)
        yield Event(
            "answer",
            Answer(answer=text, answerable=True, citations=citations, answerer="llm", degraded=degraded, **base),
        )

    def _show(self, shown: str, text: str, passages: list[Passage]) -> Iterator[Event]:
        """Streamed: make the text the client shows ``text`` (its end, or after a reset all of it)."""
        if text == shown:
            return
        if text.startswith(shown):
            yield Event("delta", text[len(shown) :])
            return
        if shown:
            yield Event("reset", None)
            yield Event("passages", [self._passage_citation(i, p) for i, p in enumerate(passages, 1)])
        yield Event("delta", text)

    # -- citation helpers ------------------------------------------------------
    def _with_also_in(self, citations: list[Citation], passages: list[Passage]) -> list[Citation]:
        """Each citation with the other articles of its story that carry the quoted passage.

        Retrieval keeps one copy of a syndicated story; the outlets that also ran it are named here.
        A failing lookup leaves ``also_in`` empty: the answer stands without it.
        """
        story_of = {p.chunk_id: p.story_id for p in passages if p.story_id}
        members: dict[str, list[dict[str, Any]]] = {}
        texts: dict[str, list[str]] = {}  # a copy's folded chunks, read once for all its citations
        out = []
        for c in citations:
            story = story_of.get(c.chunk_id)
            if story is None:
                out.append(c)
                continue
            try:
                if story not in members:
                    members[story] = self.store.story_documents(story)
                others = [r for r in members[story] if r["doc_id"] != c.doc_id][:_ALSO_IN_MAX]
                for r in others:
                    if (doc := r["doc_id"]) not in texts:
                        texts[doc] = [fold(ch.get("text", "")) for ch in self.store.document_chunks(doc)]
                carrying = [r for r in others if _carries(texts[r["doc_id"]], c.quote)]
            except Exception as exc:  # noqa: BLE001 - an extra, never a reason to fail the answer
                log.warning("also_in lookup failed for story %s: %s", story, exc)
                carrying = []
            also = [AlsoIn(doc_id=r["doc_id"], title=r.get("title") or "", source=r.get("source"),
                           url=r.get("url"), date=r.get("date")) for r in carrying]
            out.append(c.model_copy(update={"also_in": also}) if also else c)
        return out

    def _passage_citation(self, n: int, p: Passage) -> Citation:
        start, end = p.sentences[0] if p.sentences else (0, len(p.text))
        return Sentence(p, start, end, p.text[start:end]).citation(n)

    def _quote(self, n: int, passage: Passage, answer: str) -> Citation:
        """The sentence of ``passage`` that best supports what the answer says at ``[n]``."""
        claims = _claims(answer, n) or [answer]
        sentences = [
            Sentence(passage, s, e, passage.text[s:e]) for s, e in passage.sentences or [(0, len(passage.text))]
        ]
        self.scorer.score(" ".join(claims), sentences)
        best = max(sentences, key=lambda s: s.score)
        return best.citation(n)

    def _repair(self, text: str, passages: list[Passage], checker: MarkerChecker) -> str:
        """Attach a marker to each answer sentence that a passage sentence clearly supports."""
        out = []
        candidates = [Sentence(p, s, e, p.text[s:e]) for p in passages for s, e in p.sentences or [(0, len(p.text))]]
        index = {p.chunk_id: i for i, p in enumerate(passages, 1)}
        for s, e in sentence_spans(text) or [(0, len(text))]:
            claim = text[s:e]
            # Across scripts only a name's consonants or a number can match, which is no evidence on its
            # own ("Paris" meets برئاسة): an unmarked claim is tied only to a sentence in its own script.
            same = [c for c in candidates if detect_language(c.text) == detect_language(claim)]
            self.scorer.score(claim, same)
            best = max(same, key=lambda c: c.score, default=None)
            if best is not None and best.score >= _REPAIR_MIN:
                k = index[best.passage.chunk_id]
                if k not in checker.order:
                    checker.order.append(k)
                claim = f"{claim} [{k}]"
            out.append(claim)
        return " ".join(out)
