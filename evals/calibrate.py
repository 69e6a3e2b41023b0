"""Fit the offline answerer's weights and refusal floors on development splits, and only there.

    python -m evals.calibrate --set GOLD.jsonl=CORPUS [--set ...] [--split dev]

Each set's corpus is indexed into a fresh temporary store (the vector cache is shared), each item of
the split is retrieved once, and every candidate sentence's signals are kept (word coverage, cosine
with the question, answer type, heading). The grid search then replays only the cheap combination
step, with :class:`rag.extractive.ExtractiveAnswerer` itself, so what is fitted is exactly what runs.

What is chosen, in order:
1. the combination weights (meaning against words, and the cosine range mapped to 0..1, for questions
   over articles in their own script, then apart for English questions over Arabic articles), by how
   often the best sentence holds a gold fact on answerable items (each set counts equally, so the news
   gold set weighs as much as XQuAD) plus ``--refusal-weight`` times the share of unanswerable items a
   support floor refuses (at ``--max-false-refusal``): an answerer must quote the answer and know when
   there is none;
2. the refusal floors (same script, across scripts): the highest floor whose false refusals on the
   answerable dev items stay within ``--max-false-refusal``, with the share of support left to a best
   sentence that lacks the asked-for kind of thing (``missing_type_support``) chosen to refuse most;
3. the share of the best score a further sentence needs (``extra_ratio``, and ``extra_ratio_cross`` for
   English questions over Arabic articles), by fact recall minus half the share of quoted sentences that
   hold no fact; then, by the same measure, the share a sentence from another article than the best
   one's needs (``extra_ratio_other``, ``extra_ratio_other_cross``);
4. the refusal model (same script, across scripts): a logistic regression on the selection's signals
   (:data:`rag.extractive.SIGNALS`) of answerable against unanswerable dev items, its threshold then set,
   like the floors, so that false refusals on answerable dev items stay within ``--max-false-refusal``;
   used only where it refuses more than the support floor in 5-fold cross-validation on dev.

5. the hedge margins (same script, across scripts): an answer closer than this to the refusal line is offered
   as the closest the articles come; the highest margin under which fewer than half the answered dev items
   quote a gold fact.

The answer-type penalty (``type_penalty``) is not fitted: over 0.5–1.0 the dev fact share moved by
about one point (.670 to .684), too little to choose by, so the rule keeps its default weight.

It prints the values for ``rag/settings.py`` (``AnswerSettings``) and writes them with the dev
figures to ``--out``. It never reads the test split.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from evals.gold import GoldItem, load_gold
from evals.metrics import fact_found
from evals.runner import corpus_engine
from rag.extractive import ExtractiveAnswerer, Sentence
from rag.models import Passage
from rag.settings import AnswerSettings, Settings


@dataclass
class Case:
    set: str
    item: GoldItem
    passages: list[Passage]
    sentences: list[Sentence]
    said: str = ""  # a follow-up's previous answer
    query: str = ""  # what the reader reads: the question, or a follow-up made standalone


def collect(gold: Path, corpus: Path, split: str, settings: Settings) -> list[Case]:
    items = [i for i in load_gold(gold) if i.split == split]
    cases = []
    with corpus_engine([corpus], settings) as engine:
        for item in items:
            rewritten, _ = engine.rewrite(item.question, item.turns)
            query = rewritten or item.question
            prefer, said, _ = engine._previous_answer(item.turns) if rewritten else ([], "", False)
            passages, vector = engine.retrieve(query, prefer=prefer)
            if rewritten:  # as Sanad.stream does for a follow-up
                own = engine.retriever.query_vector(item.question)
                sentences = engine.extractive.candidates(item.question, passages, own, context=(query, vector))
            else:
                sentences = engine.extractive.candidates(query, passages, vector)
            cases.append(Case(str(gold), item, passages, sentences, said, query))
    return cases


def _script(case: Case) -> str:
    """``cross`` when most candidate sentences are in the other script than the question (English over
    Arabic articles), else ``same``."""
    cross = sum(s.cross for s in case.sentences)
    return "cross" if case.sentences and cross * 2 > len(case.sentences) else "same"


def _holds_fact(item: GoldItem, text: str) -> bool:
    return any(fact_found(f, text) for f in item.facts)


def replaying(answer: AnswerSettings) -> ExtractiveAnswerer:
    """An answerer with only its settings: what choosing among kept candidates needs (no encoder, no reader)."""
    answerer = ExtractiveAnswerer.__new__(ExtractiveAnswerer)
    answerer.settings = answer
    return answerer


def replay(cases: list[Case], answer: AnswerSettings) -> list[dict[str, Any]]:
    """The answerer's choice on each case under ``answer``."""
    answerer = replaying(answer)
    out = []
    for c in cases:
        sentences = [replace(s) for s in c.sentences]
        sel = answerer.combine(sentences, c.passages, c.said)
        quoted = [s.text for s in sel.sentences]
        facts = [f for f in c.item.facts if any(fact_found(f, q) for q in quoted)]
        out.append({
            "margin": answerer.margin(sel) if sel.sentences else float("-inf"),
            "set": c.set,
            "answerable": c.item.answerable,
            "lang": c.item.lang,
            "support": sel.support,
            "cross": sel.cross,
            "top_fact": bool(sel.sentences) and c.item.answerable and _holds_fact(c.item, quoted[0]),
            "fact_recall": len(facts) / len(c.item.facts) if c.item.facts else 0.0,
            "filler": sum(not _holds_fact(c.item, q) for q in quoted) / len(quoted) if quoted else 0.0,
            "says": bool(sel.sentences),
            "sure": bool(sel.sentences) and answerer.sure(sel),  # answered, not offered as the closest
            "signals": sel.signals,
            # The first passage as retrieved and as re-ranked by reading (Selection.in_order).
            "first_doc": c.passages[0].doc_id if c.passages else None,
            "first_doc_read": sel.in_order(c.passages)[0].doc_id if c.passages else None,
        })
    return out


def per_set_mean(rows: list[dict[str, Any]], key: str) -> float:
    """The mean of ``key`` in each set, averaged over sets: a small news set counts as much as XQuAD."""
    sets = sorted({r["set"] for r in rows})
    return statistics.mean(statistics.mean(r[key] for r in rows if r["set"] == s) for s in sets)


def fit_floor(rows: list[dict[str, Any]], cross: bool, max_false: float) -> tuple[float, dict[str, float]]:
    pos = sorted(r["support"] for r in rows if r["answerable"] and r["says"] and r["cross"] == cross)
    neg = [r["support"] for r in rows if not r["answerable"] and r["cross"] == cross]
    if not pos:
        return 0.0, {}
    allowed = int(max_false * len(pos))
    floor = pos[allowed] if allowed < len(pos) else pos[-1]
    refused = sum(s < floor for s in neg) / len(neg) if neg else float("nan")
    return floor, {"false_refusal": sum(s < floor for s in pos) / len(pos), "refused_unanswerable": refused,
                   "answerable": len(pos), "unanswerable": len(neg)}


def fit_refusal(rows: list[dict[str, Any]], max_false: float, features: list[int] | None = None,
                positive_weight: float = 3.0) -> list[float]:
    """Logistic regression (numpy, L2) of answerable on the signals (all, or the ``features`` given), with
    the bias shifted so that at most ``max_false`` of the answerable rows fall below zero. Answerable rows
    weigh ``positive_weight``: what matters is the tail of answerable items with weak signals, where the
    line is drawn. Returns one weight per signal (0 for those left out), then the bias, in raw units."""
    x = np.array([r["signals"] for r in rows], dtype=np.float64)
    keep = np.zeros(x.shape[1], dtype=bool)
    keep[features if features is not None else slice(None)] = True
    y = np.array([float(r["answerable"]) for r in rows])
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = np.c_[((x - mu) / sd)[:, keep], np.ones(len(x))]
    w = np.zeros(z.shape[1])
    cw = np.where(y == 1, positive_weight, 1.0)
    for _ in range(4000):
        p = 1 / (1 + np.exp(-z @ w))
        w -= 0.5 * (z.T @ ((p - y) * cw) / cw.sum() + 1e-2 * np.r_[w[:-1], 0.0])
    full = np.zeros(x.shape[1])
    full[keep] = w[:-1]
    weights = [round(float(v), 6) for v in full / sd]  # rounded before the bias, so the bound holds as stored
    margin = x @ np.array(weights)
    pos = np.sort(margin[y == 1])
    allowed = int(max_false * len(pos))
    bias = -float(pos[allowed] if allowed < len(pos) else pos[-1])
    return [*weights, math.ceil(bias * 1e6) / 1e6]


def refusal_figures(rows: list[dict[str, Any]], model: list[float]) -> dict[str, float]:
    x = np.array([r["signals"] for r in rows], dtype=np.float64)
    y = np.array([bool(r["answerable"]) for r in rows])
    margin = x @ np.array(model[:-1]) + model[-1]
    return {"false_refusal": float((margin[y] < 0).mean()), "refused_unanswerable": float((margin[~y] < 0).mean()),
            "answerable": int(y.sum()), "unanswerable": int((~y).sum())}


def choose_refusal(rows: list[dict[str, Any]], cross: bool, max_false: float
                   ) -> tuple[list[float], str, dict[str, dict[str, float]]]:
    """The refusal model for one script case: the logistic model on all signals, or the support alone (a
    floor), whichever refuses more unanswerable items in 5-fold cross-validation within the dev rows. The
    floor is returned as no model (``[]``): the fitted support floor then decides, as without the encoder."""
    rows = [r for r in rows if r["signals"] and r["cross"] == cross]
    if not rows or all(r["answerable"] for r in rows) or not any(r["answerable"] for r in rows):
        return [], "floor", {}
    candidates = {"signals": None, "support": [0]}
    cv: dict[str, dict[str, float]] = {}
    for name, features in candidates.items():
        refused, false = [], []
        for k in range(5):
            train = [r for i, r in enumerate(rows) if i % 5 != k]
            held = [r for i, r in enumerate(rows) if i % 5 == k]
            if all(r["answerable"] for r in held) or not any(r["answerable"] for r in held):
                continue
            f = refusal_figures(held, fit_refusal(train, max_false, features))
            refused.append(f["refused_unanswerable"])
            false.append(f["false_refusal"])
        cv[name] = {"refused_unanswerable": float(np.mean(refused)), "false_refusal": float(np.mean(false))}
    best = max(cv, key=lambda n: cv[n]["refused_unanswerable"])
    return (fit_refusal(rows, max_false) if best == "signals" else []), best, cv


def fit_hedge(rows: list[dict[str, Any]], cross: bool, signals: bool = True) -> tuple[float, dict[str, float]]:
    """The margin below which an answer is offered as the closest the articles come: the highest one under which
    fewer than half the answered dev items (answerable or not) quote a gold fact. 0 when none is. ``signals``:
    only rows judged by the refusal model's signals (the reader's rows have none)."""
    said = sorted((r for r in rows if (r["signals"] or not signals) and r["cross"] == cross and r["says"]
                   and r["margin"] >= 0), key=lambda r: r["margin"])
    hedge, right = 0.0, 0
    for i, r in enumerate(said):
        right += r["fact_recall"] > 0
        if right / (i + 1) < 0.5 and i + 1 < len(said):
            hedge = (r["margin"] + said[i + 1]["margin"]) / 2
    below = [r for r in said if r["margin"] < hedge]
    return round(hedge, 4), {
        "answered": len(said), "hedged": len(below),
        "hedged_holding_a_fact": sum(r["fact_recall"] > 0 for r in below),
        "answered_unanswerable": sum(not r["answerable"] for r in said),
        "hedged_unanswerable": sum(not r["answerable"] for r in below)}


def _fit_ratios(answerable: list[Case], chosen: AnswerSettings, keys: tuple[str, str], grid: tuple[float, ...],
                floors: tuple[float, float]) -> AnswerSettings:
    """A further-sentence ratio per script case (``keys``: same script, across scripts), by fact recall minus
    half the share of quoted sentences that hold no fact, on the answerable items each floor lets through."""
    scored: dict[str, list[tuple[float, float]]] = {key: [] for key in keys}
    for ratio in grid:
        r = replay(answerable, chosen.model_copy(update=dict.fromkeys(keys, ratio)))
        for key, cross_script in zip(keys, (False, True), strict=True):
            said = [x for x in r if x["says"] and x["cross"] == cross_script and x["support"] >= floors[cross_script]]
            recall = per_set_mean(said, "fact_recall") if said else 0.0
            filler = per_set_mean(said, "filler") if said else 0.0
            scored[key].append((recall - 0.5 * filler, ratio))
            print(f"{key} {ratio}: fact recall {recall:.3f}, filler {filler:.3f}")
    return chosen.model_copy(update={key: max(pairs)[1] for key, pairs in scored.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", required=True, metavar="GOLD=CORPUS")
    ap.add_argument("--split", default="dev", choices=["dev"])
    ap.add_argument("--max-false-refusal", type=float, default=0.04)
    ap.add_argument("--refusal-weight", type=float, default=1.0,
                    help="weights are chosen on best-sentence fact share + this x share of unanswerable refused")
    ap.add_argument("--out", type=Path, default=Path("evals/calibration.json"))
    args = ap.parse_args()
    settings = Settings()
    cases: list[Case] = []
    for spec in args.set:
        gold, corpus = spec.split("=", 1)
        got = collect(Path(gold), Path(corpus), args.split, settings)
        print(f"{gold}: {len(got)} {args.split} items")
        cases += got

    # Same script (Arabic or English questions over articles in their language) and across scripts (English
    # questions over Arabic articles) are fitted
    # apart: cosines between two languages sit on another scale than within one, and the words shared
    # across scripts (names, numbers, dictionary translations) are another signal than shared stems.
    # From fixed starting values, not the current defaults (the last fit): what is fitted later is neutral
    # here (the missing-type share of support, which the floors below read, is 1: no scaling).
    chosen = AnswerSettings(missing_type_support=1.0)
    answerable = [c for c in cases if c.item.answerable]
    grids = [
        ("same", {"semantic_weight": [0.2, 0.3, 0.5, 0.7], "semantic_floor": [0.68, 0.72, 0.76],
                  "semantic_ceiling": [0.88, 0.92, 0.96]}),
        ("cross", {"cross_semantic_weight": [0.5, 0.7, 0.85, 1.0], "cross_semantic_floor": [0.68, 0.72, 0.76],
                   "cross_semantic_ceiling": [0.88, 0.92, 0.96]}),
    ]
    fitted_weights: dict[str, Any] = {}
    top_fact: dict[str, float] = {}
    for lang, grid in grids:
        mine = [c for c in cases if _script(c) == lang]
        best: tuple[float, dict[str, Any]] | None = None
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values, strict=True))
            rows = replay(mine, chosen.model_copy(update={**params, "extra_ratio": 1.0}))
            fact = per_set_mean([r for r in rows if r["answerable"]], "top_fact")
            refused = fit_floor(rows, lang == "cross", args.max_false_refusal)[1].get("refused_unanswerable", 0.0)
            score = fact + args.refusal_weight * refused
            if best is None or score > best[0]:
                best = (score, params)
                top_fact[lang] = fact
        assert best is not None
        chosen = chosen.model_copy(update=best[1])
        fitted_weights.update(best[1])
        print(f"weights ({lang} script) {best[1]}: best sentence holds a fact on {top_fact[lang]:.3f} of "
              f"answerable dev items (objective {best[0]:.3f})")

    fits = []
    for factor in (1.0, 0.8, 0.6, 0.4, 0.2):
        trial = chosen.model_copy(update={"extra_ratio": 1.0, "missing_type_support": factor})
        rows = replay(cases, trial)
        floor_same, same = fit_floor(rows, False, args.max_false_refusal)
        floor_cross, cross = fit_floor(rows, True, args.max_false_refusal)
        refused = statistics.mean(x for x in (same.get("refused_unanswerable"), cross.get("refused_unanswerable"))
                                  if x is not None)
        print(f"missing_type_support {factor}: refused {refused:.3f} (same {same}, cross {cross})")
        fits.append((refused, factor, floor_same, floor_cross, same, cross))
    _, factor, floor_same, floor_cross, same, cross = max(fits, key=lambda f: (f[0], f[1]))
    chosen = chosen.model_copy(update={"min_support_dense": round(floor_same, 4), "missing_type_support": factor,
                                       "min_support_cross_dense": round(floor_cross, 4)})
    print(f"floors: same script {floor_same:.4f} {same}; across scripts {floor_cross:.4f} {cross}")

    # Per script case: across scripts the scores hold less, and more of the further sentences were filler.
    floors = (floor_same, floor_cross)
    chosen = _fit_ratios(answerable, chosen, ("extra_ratio", "extra_ratio_cross"),
                         (0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0), floors)
    chosen = _fit_ratios(answerable, chosen, ("extra_ratio_other", "extra_ratio_other_cross"),
                         (0.0, 0.85, 0.9, 0.95, 1.0), floors)

    rows = replay(cases, chosen)
    refusal_dev: dict[str, Any] = {}
    models = {}
    for key, cross_script in (("same_script", False), ("cross_script", True)):
        model, kind, cv = choose_refusal(rows, cross_script, args.max_false_refusal)
        models[key] = model
        own = [r for r in rows if r["signals"] and r["cross"] == cross_script]
        refusal_dev[key] = {"model": kind, "cross_validated": cv,
                            "dev": refusal_figures(own, model) if model else (same if key == "same_script" else cross)}
        print(f"refusal, {key}: {kind} chosen; 5-fold on dev {cv}; all dev {refusal_dev[key]['dev']}")
    chosen = chosen.model_copy(update={"refusal_same": models["same_script"], "refusal_cross": models["cross_script"]})

    rows = replay(cases, chosen)
    hedges = {key: fit_hedge(rows, cross) for key, cross in (("hedge_same", False), ("hedge_cross", True))}
    for key, (value, figures) in hedges.items():
        print(f"{key} {value}: {figures}")
    chosen = chosen.model_copy(update={key: value for key, (value, _) in hedges.items()})

    fitted = {k: getattr(chosen, k) for k in (*fitted_weights, "min_support_dense", "min_support_cross_dense",
                                              "missing_type_support", "extra_ratio", "extra_ratio_cross",
                                              "extra_ratio_other", "extra_ratio_other_cross",
                                              "refusal_same", "refusal_cross", "hedge_same", "hedge_cross")}
    print("AnswerSettings:", json.dumps(fitted))
    args.out.write_text(json.dumps({"fitted": fitted, "sets": args.set, "split": args.split,
                                    "dev": {"same_script": same, "cross_script": cross,
                                            "top_fact": top_fact, "refusal": refusal_dev,
                                            "hedge": {k: f for k, (_, f) in hedges.items()}}}, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
