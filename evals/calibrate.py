"""Fit the offline answerer's weights and refusal floors on development splits, and only there.

    python -m evals.calibrate --set GOLD.jsonl=CORPUS [--set ...] [--split dev]

Each set's corpus is indexed into a fresh temporary store (the vector cache is shared), each item of
the split is retrieved once, and every candidate sentence's signals are kept (word coverage, cosine
with the question, answer type, heading). The grid search then replays only the cheap combination
step, with :class:`rag.extractive.ExtractiveAnswerer` itself, so what is fitted is exactly what runs.

What is chosen, in order:
1. the combination weights (meaning against words, same script and across scripts, the answer-type
   penalty), by how often the best sentence holds a gold fact on answerable items (each set counts
   equally, so the news gold set weighs as much as XQuAD);
2. the refusal floors (same script, across scripts): the highest floor whose false refusals on the
   answerable dev items stay within ``--max-false-refusal``, with the share of support left to a best
   sentence that lacks the asked-for kind of thing (``missing_type_support``) chosen to refuse most;
3. the share of the best score a further sentence needs (``extra_ratio``), by fact recall minus
   half the share of quoted sentences that hold no fact.

It prints the values for ``rag/settings.py`` (``AnswerSettings``) and writes them with the dev
figures to ``--out``. It never reads the test split.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

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


def collect(gold: Path, corpus: Path, split: str, settings: Settings) -> list[Case]:
    items = [i for i in load_gold(gold) if i.split == split]
    cases = []
    with corpus_engine([corpus], settings) as engine:
        for item in items:
            rewritten, _ = engine.rewrite(item.question, item.turns)
            query = rewritten or item.question
            prefer, said = engine._previous_answer(item.turns) if rewritten else ([], "")
            passages, vector = engine.retrieve(query, prefer=prefer)
            if rewritten:  # as Sanad.stream does for a follow-up
                own = engine.retriever.query_vector(item.question)
                sentences = engine.extractive.candidates(item.question, passages, own, context=(query, vector))
            else:
                sentences = engine.extractive.candidates(query, passages, vector)
            cases.append(Case(str(gold), item, passages, sentences, said))
    return cases


def _holds_fact(item: GoldItem, text: str) -> bool:
    return any(fact_found(f, text) for f in item.facts)


def replay(cases: list[Case], answer: AnswerSettings) -> list[dict[str, Any]]:
    """The answerer's choice on each case under ``answer``."""
    answerer = ExtractiveAnswerer.__new__(ExtractiveAnswerer)
    answerer.settings = answer
    out = []
    for c in cases:
        sentences = [replace(s) for s in c.sentences]
        sel = answerer.combine(sentences, c.passages, c.said)
        quoted = [s.text for s in sel.sentences]
        facts = [f for f in c.item.facts if any(fact_found(f, q) for q in quoted)]
        out.append({
            "set": c.set,
            "answerable": c.item.answerable,
            "lang": c.item.lang,
            "support": sel.support,
            "cross": sel.cross,
            "top_fact": bool(sel.sentences) and c.item.answerable and _holds_fact(c.item, quoted[0]),
            "fact_recall": len(facts) / len(c.item.facts) if c.item.facts else 0.0,
            "filler": sum(not _holds_fact(c.item, q) for q in quoted) / len(quoted) if quoted else 0.0,
            "says": bool(sel.sentences),
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", required=True, metavar="GOLD=CORPUS")
    ap.add_argument("--split", default="dev", choices=["dev"])
    ap.add_argument("--max-false-refusal", type=float, default=0.04)
    ap.add_argument("--out", type=Path, default=Path("evals/calibration.json"))
    args = ap.parse_args()
    settings = Settings()
    cases: list[Case] = []
    for spec in args.set:
        gold, corpus = spec.split("=", 1)
        got = collect(Path(gold), Path(corpus), args.split, settings)
        print(f"{gold}: {len(got)} {args.split} items")
        cases += got

    base = AnswerSettings()
    grid = {
        "semantic_weight": [0.2, 0.3, 0.5, 0.7],
        "cross_semantic_weight": [0.7, 0.85, 1.0],
        "semantic_floor": [0.68, 0.72, 0.76],
        "semantic_ceiling": [0.88, 0.92, 0.96],
        "type_penalty": [0.6, 0.8, 1.0],
    }
    best: tuple[float, dict[str, Any]] | None = None
    answerable = [c for c in cases if c.item.answerable]
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        rows = replay(answerable, base.model_copy(update={**params, "extra_ratio": 1.0}))
        score = per_set_mean(rows, "top_fact")
        if best is None or score > best[0]:
            best = (score, params)
    assert best is not None
    chosen = base.model_copy(update=best[1])
    print(f"weights {best[1]}: best sentence holds a fact on {best[0]:.3f} of answerable dev items")

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

    extras = []
    for ratio in (0.7, 0.8, 0.85, 0.9, 0.95, 1.0):
        r = replay(answerable, chosen.model_copy(update={"extra_ratio": ratio}))
        said = [x for x in r if x["says"] and x["support"] >= (floor_cross if x["cross"] else floor_same)]
        recall = per_set_mean(said, "fact_recall") if said else 0.0
        filler = per_set_mean(said, "filler") if said else 0.0
        extras.append((recall - 0.5 * filler, ratio, recall, filler))
        print(f"extra_ratio {ratio}: fact recall {recall:.3f}, filler {filler:.3f}")
    chosen = chosen.model_copy(update={"extra_ratio": max(extras)[1]})

    fitted = {k: getattr(chosen, k) for k in (*grid, "min_support_dense", "min_support_cross_dense",
                                              "missing_type_support", "extra_ratio")}
    print("AnswerSettings:", json.dumps(fitted))
    args.out.write_text(json.dumps({"fitted": fitted, "sets": args.set, "split": args.split,
                                    "dev": {"same_script": same, "cross_script": cross,
                                            "top_fact": best[0]}}, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
