"""One evaluation run, as ``sanad eval`` asks for it: pick the gold items, answer them (on a fresh
store, or a running service), score, compare with a baseline, check the thresholds, write the report.

The CLI only parses options and prints :class:`EvalRun`; everything that decides the outcome is here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from evals.gold import GoldError, GoldItem, load_gold
from evals.metrics import ItemResult, summarize_by_language
from evals.report import check_thresholds, compare, write_report
from evals.runner import (
    DEFAULT_CORPUS,
    DEFAULT_GOLD,
    DEFAULT_THRESHOLDS,
    HttpTarget,
    InProcessTarget,
    corpus_engine,
    judge_faithfulness,
    run_items,
)
from rag.settings import Settings

SPLITS = ("dev", "test")


class EvalError(ValueError):
    """The run cannot start (unreadable gold file or baseline, unknown split); the message says why."""


@dataclass
class EvalPlan:
    gold: Path | None = None
    corpus: list[Path] | None = None
    url: str | None = None
    api_key: str | None = None
    report: Path | None = None
    baseline: Path | None = None
    thresholds: Path | None = None
    judge: bool = False
    limit: int | None = None
    split: str | None = None
    # The reader's pair AUC on this many XQuAD test-half questions per language; default: 150 with the project's
    # gold set (the release gate), none with another.
    reader_pairs: int | None = None


@dataclass
class EvalRun:
    summary: dict[str, dict[str, Any]]
    results: list[ItemResult]
    missed: list[str]  # thresholds not met
    comparison: dict[str, Any] | None
    folder: Path
    judged: bool


def select_items(plan: EvalPlan) -> list[GoldItem]:
    try:
        items = load_gold(plan.gold or DEFAULT_GOLD)
    except GoldError as exc:
        raise EvalError(str(exc)) from None
    if plan.split is not None:
        if plan.split not in SPLITS:
            raise EvalError("--split is dev or test")
        items = [i for i in items if i.split == plan.split]
    return items[: plan.limit] if plan.limit else items


def gate_thresholds(plan: EvalPlan) -> Path | None:
    """The release gate is the project's gold set, test split: no threshold or weight was fitted on it."""
    if plan.thresholds is None and plan.gold is None and plan.split == "test":
        return DEFAULT_THRESHOLDS
    return plan.thresholds


def evaluate(plan: EvalPlan, settings: Settings, on_start: Callable[[int], None] | None = None,
             on_item: Callable[[ItemResult], None] | None = None) -> EvalRun:
    items = select_items(plan)
    thresholds = gate_thresholds(plan)
    base = None
    if plan.baseline is not None:
        try:
            base = json.loads(plan.baseline.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EvalError(f"cannot read baseline {plan.baseline}: {exc}") from None


    def run(target: HttpTarget | InProcessTarget) -> list[ItemResult]:
        if on_start is not None:  # once the corpus is indexed: the progress is the answering
            on_start(len(items))
        return run_items(target, items, on_item=on_item)

    if plan.url:
        results = run(HttpTarget(plan.url, plan.api_key))
    else:
        with corpus_engine(plan.corpus or [DEFAULT_CORPUS], settings) as engine:
            results = run(InProcessTarget(engine))
    judged = plan.judge and settings.llm.enabled
    if judged:
        judge_faithfulness(settings, results)
    summary = summarize_by_language(results)
    reader_name = None
    pairs = plan.reader_pairs if plan.reader_pairs is not None else (150 if plan.gold is None else 0)
    if not plan.url and pairs > 0:  # the reader's own figure: pairs from the XQuAD test half, beside the gold set's
        from evals.reader.measure import release_auc
        from rag.reader import load_reader

        reader = load_reader(settings.answer.reader, settings.embed.threads)
        if reader is not None:
            reader_name = reader.name
            for lang, auc in release_auc(reader, pairs).items():
                if lang in summary:
                    summary[lang]["reader_pair_auc"] = auc
    missed = check_thresholds(summary, thresholds) if thresholds else []
    comparison = compare(results, summary, base) if base is not None else None
    folder = plan.report or settings.data_dir / "evals" / datetime.now().strftime("%Y%m%d-%H%M%S")
    meta = {
        "gold": str(plan.gold or DEFAULT_GOLD),
        "target": plan.url or "in-process",
        "when": datetime.now().isoformat(timespec="seconds"),
        "answerer": "llm" if settings.llm.enabled else "extractive",
        "reader": reader_name,
        "corpus": [str(c) for c in plan.corpus or []],
        "split": plan.split,
    }
    write_report(folder, summary, results, meta, missed, comparison)
    return EvalRun(summary, results, missed, comparison, folder, judged)
