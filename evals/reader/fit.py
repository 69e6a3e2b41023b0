"""Fit the reader's refusal and hedge thresholds on dev splits, and only there.

    python -m evals.reader.fit --set GOLD=CORPUS [--set ...]

Each set's dev items are retrieved as the answerer does (:func:`evals.calibrate.collect`), the reader reads each
question against its best-ranked sentences, and the answerer's own reader branch is replayed. XQuAD dev items
from articles the reader was trained on are left out (its logits there are those of training examples); the
reader's dev articles stay. Chosen per script case (same script; English questions over Arabic articles):

1. ``reader_refusal_*``: the highest threshold (in logits) that refuses at most ``--max-false-refusal`` of the
   answerable dev items that get an answer (per set, averaged: XQuAD weighs as much as the news sets);
2. ``reader_hedge_*``: the margin over it under which fewer than half the answered dev items quote a gold fact.

It prints the values for ``AnswerSettings`` and writes them with the dev figures to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

from evals.calibrate import Case, collect, fit_hedge, replay
from evals.reader.data import xquad_items
from rag.extractive import ExtractiveAnswerer
from rag.reader import CROSS_READER, load_reader
from rag.settings import Settings


def trained_on() -> set[str]:
    """Question ids (XQuAD's, shared by both languages) of the articles the reader trained on."""
    return {it.qid.split("-", 2)[2] for it in xquad_items() if it.split == "train"}


def fit_threshold(rows: list[dict[str, Any]], cross: bool, max_false: float) -> tuple[float, dict[str, Any]]:
    """Per set, the ``max_false`` quantile of the answerable items' best logits; the sets' mean."""
    mine = [r for r in rows if r["cross"] == cross and r["says"]]
    per_set = []
    for s in sorted({r["set"] for r in mine}):
        pos = sorted(r["margin"] for r in mine if r["set"] == s and r["answerable"])
        if len(pos) >= 10:
            per_set.append(pos[int(max_false * len(pos))])
    if not per_set:
        return 0.0, {}
    t = round(statistics.mean(per_set), 4)
    pos = [r["margin"] for r in mine if r["answerable"]]
    neg = [r["margin"] for r in mine if not r["answerable"]]
    return t, {"false_refusal": sum(m < t for m in pos) / len(pos),
               "refused_unanswerable": sum(m < t for m in neg) / len(neg) if neg else None,
               "answerable": len(pos), "unanswerable": len(neg)}


def compare(plain: list[dict[str, Any]], read: list[dict[str, Any]], refusal: dict[str, float]) -> dict[str, Any]:
    """The signals' answers (``plain``, refused at their own calibrated line) against the reader branch's
    (``read``: margins at threshold 0, refused below ``refusal[same|cross]``), per script case."""
    out: dict[str, Any] = {}
    for key, cross in (("same", False), ("cross", True)):
        mine = [i for i, r in enumerate(read) if r["cross"] == cross]
        ans = [i for i in mine if read[i]["answerable"]]
        neg = [i for i in mine if not read[i]["answerable"]]
        t = refusal[key]
        out[key] = {
            "answerable": len(ans), "unanswerable": len(neg),
            "signals": {
                "unanswerable_refused": sum(plain[i]["margin"] < 0 for i in neg) / max(len(neg), 1),
                "answerable_refused": sum(plain[i]["margin"] < 0 for i in ans) / max(len(ans), 1),
                "top_fact": sum(plain[i]["top_fact"] for i in ans) / max(len(ans), 1),
                "fact_recall": sum(plain[i]["fact_recall"] for i in ans) / max(len(ans), 1),
            },
            "reader": {
                "unanswerable_refused": sum(read[i]["margin"] < t for i in neg) / max(len(neg), 1),
                "answerable_refused": sum(read[i]["margin"] < t for i in ans) / max(len(ans), 1),
                "top_fact": sum(read[i]["top_fact"] for i in ans) / max(len(ans), 1),
                "fact_recall": sum(read[i]["fact_recall"] for i in ans) / max(len(ans), 1),
            },
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", required=True, metavar="GOLD=CORPUS")
    ap.add_argument("--reader", default=CROSS_READER, help="a reader under rag/data/ or an .onnx path")
    ap.add_argument("--max-false-refusal", type=float, default=0.05)
    ap.add_argument("--out", type=Path, default=Path("evals/reader/fit.json"))
    ap.add_argument("--split", default="dev", choices=["dev", "test"],
                    help="test: fit nothing; compare the signals and the reader at the configured thresholds")
    args = ap.parse_args()
    settings = Settings()
    reader = load_reader(args.reader, settings.embed.threads)
    if reader is None:
        raise SystemExit(f"the reader {args.reader!r} could not be loaded (sanad train-reader --export …)")
    seen = trained_on()
    cases: list[Case] = []
    for spec in args.set:
        gold, corpus = spec.split("=", 1)
        got = [c for c in collect(Path(gold), Path(corpus), args.split, settings) if c.item.id not in seen]
        print(f"{gold}: {len(got)} {args.split} items the reader did not train on")
        cases += got
    plain = replay([replace(c, sentences=[replace(s) for s in c.sentences]) for c in cases], settings.answer)
    answerer = ExtractiveAnswerer.__new__(ExtractiveAnswerer)
    answerer.settings = settings.answer
    answerer.reader = reader
    for c in cases:
        answerer.read(c.query, c.sentences, c.passages, c.said)
    zero = settings.answer.model_copy(update={"reader_refusal_same": 0.0, "reader_refusal_cross": 0.0})
    read_rows = replay([replace(c) for c in cases], zero)
    configured = {"same": settings.answer.reader_refusal_same, "cross": settings.answer.reader_refusal_cross}
    if args.split == "test":
        print(json.dumps(compare(plain, read_rows, configured), indent=1))
        return
    fitted: dict[str, Any] = {"reader": reader.name, "max_false_refusal": args.max_false_refusal}
    update: dict[str, float] = {}
    for cross, key in ((False, "same"), (True, "cross")):
        t, figures = fit_threshold(read_rows, cross, args.max_false_refusal)
        update[f"reader_refusal_{key}"] = t
        fitted[f"refusal_{key}"] = figures
    rows = replay([replace(c) for c in cases], settings.answer.model_copy(update=update))
    for cross, key in ((False, "same"), (True, "cross")):
        h, figures = fit_hedge(rows, cross, signals=False)
        update[f"reader_hedge_{key}"] = h
        fitted[f"hedge_{key}"] = figures
    fitted["values"] = update
    fitted["compare_dev"] = compare(plain, read_rows, {"same": update["reader_refusal_same"],
                                                  "cross": update["reader_refusal_cross"]})
    print(json.dumps(fitted, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fitted, indent=1) + "\n")


if __name__ == "__main__":
    main()
