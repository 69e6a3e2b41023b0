"""The calibration's refusal model, on rows shaped like the answerer's, and the defaults it wrote."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from evals.calibrate import choose_refusal, fit_hedge, fit_refusal, refusal_figures
from rag.extractive import SIGNALS
from rag.settings import AnswerSettings

ROOT = Path(__file__).resolve().parent.parent


def rows(n: int, telling: int, seed: int = 7) -> list[dict[str, Any]]:
    """Answerable and unanswerable rows whose signals are noise except ``telling``, which separates them
    with some overlap."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        answerable = i % 3 != 0
        signals = [rng.random() for _ in SIGNALS]
        signals[telling] = rng.gauss(0.7 if answerable else 0.4, 0.1)
        out.append({"answerable": answerable, "cross": False, "signals": tuple(signals)})
    return out


def test_the_refusal_model_keeps_false_refusals_within_the_bound() -> None:
    data = rows(600, telling=SIGNALS.index("best_meaning"))
    model = fit_refusal(data, max_false=0.04)
    figures = refusal_figures(data, model)
    assert figures["false_refusal"] <= 0.04
    assert figures["refused_unanswerable"] > 0.5  # the telling signal was found among noise


def test_the_model_is_used_only_when_it_beats_the_support_floor_in_cross_validation() -> None:
    telling_elsewhere = rows(600, telling=SIGNALS.index("best_meaning"))
    model, kind, cv = choose_refusal(telling_elsewhere, cross=False, max_false=0.04)
    assert kind == "signals" and len(model) == len(SIGNALS) + 1
    assert cv["signals"]["refused_unanswerable"] > cv["support"]["refused_unanswerable"]
    telling_support = rows(600, telling=SIGNALS.index("support"))
    model, kind, cv = choose_refusal(telling_support, cross=False, max_false=0.04)
    if kind == "support":
        assert model == []  # the fitted support floor decides
    assert cv["support"]["refused_unanswerable"] > 0.5


def test_the_hedge_margin_is_where_answers_become_more_often_wrong_than_right() -> None:
    def row(margin: float, right: bool, answerable: bool = True) -> dict[str, Any]:
        return {"answerable": answerable, "cross": False, "signals": (0.0,), "says": True, "margin": margin,
                "fact_recall": 1.0 if right else 0.0}
    # Close to the line (margin < 1), one answer in four is right; further out, nine in ten. The hedged answers,
    # taken together, are right less than half the time: the line falls where the right ones below it make up
    # half (10 of the first 40, then 9 of each 10 more: about 24 past 1.0, margin ~1.6).
    data = [row(0.1 + 0.9 * i / 40, right=i % 4 == 0, answerable=i % 2 == 0) for i in range(40)]
    data += [row(1.0 + i / 40, right=i % 10 != 0) for i in range(40)]
    data.append(row(-0.5, right=False))  # refused: not an answer, not counted
    hedge, figures = fit_hedge(data, cross=False)
    assert 1.4 <= hedge <= 1.8
    assert figures["answered"] == 80 and figures["hedged_holding_a_fact"] < figures["hedged"] / 2
    assert figures["hedged_unanswerable"] == 20  # every unanswerable one was close to the line
    assert fit_hedge([row(1.0 + i, right=True) for i in range(10)], cross=False)[0] == 0.0  # nothing to hedge


def test_the_defaults_are_what_the_calibration_wrote() -> None:
    fitted = json.loads((ROOT / "evals" / "calibration.json").read_text(encoding="utf-8"))["fitted"]
    defaults = AnswerSettings()
    assert {k: getattr(defaults, k) for k in fitted} == fitted
