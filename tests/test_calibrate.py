"""The calibration's refusal model, on rows shaped like the answerer's, and the defaults it wrote."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from evals.calibrate import choose_refusal, fit_refusal, refusal_figures
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


def test_the_defaults_are_what_the_calibration_wrote() -> None:
    fitted = json.loads((ROOT / "evals" / "calibration.json").read_text(encoding="utf-8"))["fitted"]
    defaults = AnswerSettings()
    assert {k: getattr(defaults, k) for k in fitted} == fitted
