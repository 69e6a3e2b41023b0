"""Metrics on one answered gold item, and their aggregation. Pure functions, unit-tested."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from evals.gold import GoldItem
from rag.models import Answer
from rag.text import detect_language, fold

_QUOTED = re.compile(r"«[^»]*»")
KS = (1, 5, 10)


def fact_found(alternatives: list[str], answer: str) -> bool:
    folded = fold(answer)
    return any(fold(a) in folded for a in alternatives)


def first_hit_rank(retrieved: list[str], sources: list[str]) -> int | None:
    """1-based rank of the first gold source among ranked distinct documents."""
    for i, doc in enumerate(retrieved, 1):
        if doc in sources:
            return i
    return None


def answer_language(answer: str) -> str:
    """The language Sanad wrote in: quoted article text («...») keeps its own language."""
    own = _QUOTED.sub(" ", answer)
    return detect_language(own if own.strip(" .:") else answer)


@dataclass
class ItemResult:
    id: str
    lang: str
    answerable: bool
    retrieved: list[str]
    answer: str
    citations: list[dict[str, Any]]
    facts_found: list[list[str]]
    facts_missed: list[list[str]]
    refused: bool
    latency_ms: float
    hit_rank: int | None
    cited_from_sources: int
    cited_supporting: int
    language_ok: bool
    degraded: bool = False
    rewritten_question: str | None = None
    faithfulness: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    hedged: bool = False  # answered as "the closest the articles come" (Answer.confident false)


def score_item(item: GoldItem, answer: Answer, retrieved: list[str], latency_ms: float) -> ItemResult:
    found = [f for f in item.facts if fact_found(f, answer.answer)]
    missed = [f for f in item.facts if f not in found]
    cites = answer.citations
    alts = [a for f in found for a in f]
    return ItemResult(
        id=item.id,
        lang=item.lang,
        answerable=item.answerable,
        retrieved=retrieved,
        answer=answer.answer,
        citations=[c.model_dump() for c in cites],
        facts_found=found,
        facts_missed=missed,
        refused=not answer.answerable,
        latency_ms=latency_ms,
        hit_rank=first_hit_rank(retrieved, item.sources) if item.answerable else None,
        cited_from_sources=sum(c.doc_id in item.sources for c in cites),
        cited_supporting=sum(any(fold(a) in fold(c.quote) for a in alts) for c in cites),
        language_ok=answer_language(answer.answer) == item.lang,
        degraded=answer.degraded,
        rewritten_question=answer.rewritten_question,
        hedged=answer.answerable and not answer.confident,
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def summarize(results: list[ItemResult]) -> dict[str, Any]:
    """Every metric over ``results`` (one language or all). ``None`` where nothing was measured."""
    ans = [r for r in results if r.answerable]
    unans = [r for r in results if not r.answerable]
    out: dict[str, Any] = {"items": len(results), "answerable": len(ans), "unanswerable": len(unans)}
    for k in KS:
        out[f"hit@{k}"] = _ratio(sum(r.hit_rank is not None and r.hit_rank <= k for r in ans), len(ans))
    out["mrr@10"] = _ratio(sum(1 / r.hit_rank for r in ans if r.hit_rank and r.hit_rank <= 10), len(ans))
    facts = sum(len(r.facts_found) + len(r.facts_missed) for r in ans)
    out["fact_recall"] = _ratio(sum(len(r.facts_found) for r in ans), facts)
    out["all_facts"] = _ratio(sum(not r.facts_missed for r in ans), len(ans))
    cites = sum(len(r.citations) for r in ans)
    out["citation_precision"] = _ratio(sum(r.cited_from_sources for r in ans), cites)
    out["citation_support"] = _ratio(sum(r.cited_supporting for r in ans), cites)
    out["refusal_rate"] = _ratio(sum(r.refused for r in unans), len(unans))
    out["false_refusal_rate"] = _ratio(sum(r.refused for r in ans), len(ans))
    # Hedged answers (offered as the closest the articles come): how many answerable items get one, how many
    # unanswerable items still get a confident answer, and how often a confident answer holds a gold fact.
    out["hedged"] = _ratio(sum(r.hedged for r in ans), len(ans))
    out["unanswerable_confident"] = _ratio(sum(not r.refused and not r.hedged for r in unans), len(unans))
    sure = [r for r in results if not r.refused and not r.hedged]
    out["confident_right"] = _ratio(sum(r.answerable and bool(r.facts_found) for r in sure), len(sure))
    out["language_match"] = _ratio(sum(r.language_ok for r in results), len(results))
    lat = [r.latency_ms for r in results]
    out["latency_p50_ms"] = round(percentile(lat, 0.5), 1)
    out["latency_p95_ms"] = round(percentile(lat, 0.95), 1)
    out["degraded"] = sum(r.degraded for r in results)
    judged = [r.faithfulness for r in results if r.faithfulness is not None]
    if judged:
        out["faithfulness_model_judged"] = round(sum(judged) / len(judged), 4)
    return out


def summarize_by_language(results: list[ItemResult]) -> dict[str, dict[str, Any]]:
    by = {"overall": summarize(results)}
    for lang in sorted({r.lang for r in results}):
        by[lang] = summarize([r for r in results if r.lang == lang])
    return by
