"""Fit how the answerer weighs the reader in, on dev splits, and only there.

    python -m evals.reader.fit --set GOLD=CORPUS [--set ...]                 # fit on dev items
    python -m evals.reader.fit --set GOLD=CORPUS [--set ...] --split test    # compare, fitting nothing

Each set's items are retrieved as the answerer does (:func:`evals.calibrate.collect`) and the reader reads each
question against the sentences the signals rank highest, as in the service. On dev, items of the articles the
reader was trained on (XQuAD's and ARCD-train's, :mod:`evals.reader.data`) are left out: its logits there are
those of training examples. The signals' own values (``evals/calibrate.py``) stay as they are; chosen per script
case (same script; English questions over Arabic articles):

1. ``reader_weight*``: the share of the sentence score given to the reader's probability, by how often the best
   sentence holds a gold fact (the least weight among the best);
2. ``refusal_read_*`` (``--refusal stacked``, or ``auto``: if it refuses more unanswerable dev items than the
   signals' margin at that line in 5-fold cross-validation): a logistic model on the signals' refusal margin and
   the reader's signals (:data:`rag.extractive.READ_SIGNALS`), its line where at most ``--max-false-refusal`` of
   the answerable dev items are refused. By default (``signals``) the signals' margin refuses: for
   reader-cross-1, ``auto`` chose the stacked model (.391 against .327 refused in cross-validation) and on the
   test split it refused fewer unanswerable items than the signals' margin (.473 against .606 at equal false
   refusals): 490 same-script dev items are too few to fit it. Where the reader does not beat today's answerer
   on 1. and 2. together (fact share plus ``--refusal-weight`` times the share refused), it is left out of that
   script case;
3. ``hedge_read_*`` (with the stacked model): the margin under which fewer than half the answered dev items quote
   a gold fact;
4. ``reader_candidates``: how many of the best-ranked sentences it reads, the fewest that keep 1.'s fact share
   (the cases are read with 12); the most that a script case where it is on needs;
5. ``read_floor_*`` (``--read-floor``; fitted and reported without it): the reader's own refusal line, the
   logit under which it refuses at most ``--max-read-false-refusal`` more of the answerable dev items, kept
   where it refuses a larger share of the unanswerable ones. For reader-cross-1 dev proposed -2.91 (same
   script) and -3.69 (across scripts); on the test splits they refused .046 more unanswerable items in each
   case at .025 and .007 more false refusals, and on the seeds test split two more answerable English items
   (the release gate's bound missed): not set.

It writes the values for ``AnswerSettings`` with the dev figures to ``--out``. ``--split test`` replays the test
items under the configured settings with the reader and without it (today's answerer), and prints both.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from evals.calibrate import (
    Case,
    _script,
    collect,
    fit_hedge,
    fit_refusal,
    per_set_mean,
    refusal_figures,
    replay,
    replaying,
)
from evals.reader.data import arcd_items, xquad_items
from rag.extractive import SIGNALS
from rag.reader import CROSS_READER, load_reader
from rag.settings import AnswerSettings, Settings
from rag.text import fold_cached

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
CANDIDATES = (3, 4, 6, 8, 12)
OUT = Path("evals/reader/fit.json")  # at most what the cases were read with (reader_candidates when collected)


def trained_on() -> set[str]:
    """Gold item ids (XQuAD's, shared by both languages, and ARCD-train's) of the articles the reader trained on."""
    xquad = {it.qid.split("-", 2)[2] for it in xquad_items() if it.split == "train"}
    return xquad | {it.qid.removeprefix("arcd-") for it in arcd_items() if it.split == "train"}


def unread(cases: list[Case]) -> list[Case]:
    """The cases as today's answerer sees them: no sentence read."""
    return [replace(c, sentences=[replace(s, read=None) for s in c.sentences]) for c in cases]


def stacked(rows: list[dict[str, Any]], read: bool) -> list[dict[str, Any]]:
    """Rows for the stacked refusal model: the signals' margin, then the reader's signals (``read``) or nothing."""
    return [{**r, "signals": [r["margin"], *(r["signals"][len(SIGNALS):] if read else [])]}
            for r in rows if len(r["signals"]) >= len(SIGNALS)]


def cv_refused(rows: list[dict[str, Any]], max_false: float) -> dict[str, float]:
    """The refusal model's share of unanswerable rows refused in 5-fold cross-validation within ``rows``, with
    the line drawn on the pooled held-out margins where ``max_false`` of the answerable rows fall below it (so
    that models compare at the same false refusals, however many weights each fits)."""
    margins = np.zeros(len(rows))
    for k in range(5):
        train = [r for i, r in enumerate(rows) if i % 5 != k]
        model = fit_refusal(train, max_false)
        for i, r in enumerate(rows):
            if i % 5 == k:
                margins[i] = float(np.dot(model[:-1], r["signals"]) + model[-1])
    y = np.array([bool(r["answerable"]) for r in rows])
    line = np.sort(margins[y])[int(max_false * y.sum())]
    return {"refused_unanswerable": round(float((margins[~y] < line).mean()), 4),
            "false_refusal": round(float((margins[y] < line).mean()), 4)}


def figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What a user sees, per script case: refusals, hedges, confident answers, the facts quoted."""
    ans = [r for r in rows if r["answerable"]]
    neg = [r for r in rows if not r["answerable"]]

    def share(rs: list[dict[str, Any]], test: Any) -> float:
        return round(sum(bool(test(r)) for r in rs) / len(rs), 4) if rs else float("nan")

    def said(r: dict[str, Any]) -> bool:
        return bool(r["says"]) and r["margin"] >= 0

    return {
        "answerable": len(ans), "unanswerable": len(neg),
        "unanswerable_refused": share(neg, lambda r: not said(r)),
        "unanswerable_answered_confidently": share(neg, lambda r: said(r) and r["sure"]),
        "answerable_refused": share(ans, lambda r: not said(r)),
        "answerable_hedged": share(ans, lambda r: said(r) and not r["sure"]),
        "top_fact": share(ans, lambda r: r["top_fact"]),
        "fact_recall": round(sum(r["fact_recall"] for r in ans if said(r)) / len(ans), 4) if ans else float("nan"),
    }


def as_read(cases: list[Case], answer: AnswerSettings) -> list[Case]:
    """The cases as the answerer under ``answer`` sees them: unread where it does not read
    (:meth:`ExtractiveAnswerer.reads`)."""
    answerer = replaying(answer)
    return [c if answerer.reads(c.sentences) else replace(c, sentences=[replace(s, read=None) for s in c.sentences])
            for c in cases]


def compare(cases: list[Case], answer: AnswerSettings) -> dict[str, Any]:
    """Today's answerer (no reader) against the reader's, on ``cases`` under ``answer``, per script case; and
    R@1 of the passages as retrieved and re-ranked by reading (by the signals alone, and with the reader)."""
    plain = replay(unread(cases), answer)
    read = replay(as_read(cases, answer), answer)
    out: dict[str, Any] = {}
    for key in ("same", "cross"):
        idx = [i for i, c in enumerate(cases) if _script(c) == key]
        out[key] = {"signals": figures([plain[i] for i in idx]), "reader": figures([read[i] for i in idx])}
        # Whether the first passage is of a gold document: as retrieved, and re-ranked by reading.
        gold = [i for i in idx if cases[i].item.answerable and cases[i].item.sources and cases[i].passages]
        if gold:
            out[key]["passage_r1"] = {"items": len(gold), **{
                name: round(sum(rows[i][first] in cases[i].item.sources for i in gold) / len(gold), 4)
                for name, rows, first in (("retrieved", plain, "first_doc"), ("signals", plain, "first_doc_read"),
                                          ("reader", read, "first_doc_read"))}}
        # The two at one operating point: the reader's line moved to refuse as many answerable items as the
        # signals' does (which it, fitted on fewer dev items, need not do at its own line).
        ans = [read[i]["margin"] for i in idx if read[i]["answerable"]]
        neg = [read[i]["margin"] for i in idx if not read[i]["answerable"]]
        if ans and neg:
            k = round(out[key]["signals"]["answerable_refused"] * len(ans))
            line = sorted(ans)[min(k, len(ans) - 1)] if k else -math.inf
            out[key]["reader"]["unanswerable_refused_at_signals_false_refusal"] = round(
                sum(m < line for m in neg) / len(neg), 4)
    return out


def fit_read_floor(rows: list[dict[str, Any]], max_extra: float) -> tuple[float | None, dict[str, Any]]:
    """The reader's own refusal line (``read_floor_*``): the logit under which it refuses at most ``max_extra`` of
    the answerable rows beyond those refused already, kept only where it refuses a larger share of the
    unanswerable rows than that. Rows: replayed with the reader's signals."""
    def most(r: dict[str, Any]) -> float:
        return float(r["signals"][len(SIGNALS) + 1])

    answered = [r for r in rows if r["says"] and r["margin"] >= 0 and len(r["signals"]) > len(SIGNALS)]
    ans = [r for r in rows if r["answerable"]]
    neg = [r for r in rows if not r["answerable"]]
    logits = sorted(most(r) for r in answered if r["answerable"])
    if not logits or not neg:
        return None, {}
    floor = logits[min(int(max_extra * len(ans)), len(logits) - 1)]
    extra_false = sum(most(r) < floor for r in answered if r["answerable"]) / len(ans)
    extra_refused = sum(most(r) < floor for r in answered if not r["answerable"]) / len(neg)
    report = {"floor": round(floor, 4), "extra_false_refusal": round(extra_false, 4),
              "extra_unanswerable_refused": round(extra_refused, 4)}
    return (round(floor, 4) if extra_refused > extra_false else None), report


def first_read(cases: list[Case], answer: AnswerSettings) -> list[Case]:
    """The cases as if only ``answer.reader_candidates`` sentences had been read: the reads of the best-ranked
    ones by the signals kept, as :meth:`ExtractiveAnswerer.read` chooses them."""
    answerer = replaying(answer)
    out = []
    for c in cases:
        sentences = [replace(s, read=None) for s in c.sentences]
        answerer.combine(sentences, c.passages, c.said)
        kept: set[str] = set()
        for s, was in sorted(zip(sentences, c.sentences, strict=True), key=lambda t: -t[0].score):
            key = fold_cached(s.text)
            if key in kept or len(kept) < answer.reader_candidates:
                kept.add(key)
                s.read = was.read
        out.append(replace(c, sentences=sentences))
    return out


def fit(cases: list[Case], base: AnswerSettings, max_false: float, refusal_weight: float,
        refusal: str = "signals", max_read_false: float = 0.01, read_floor: bool = False
        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per script case, as the module says: the reader weight, how many sentences it reads, the refusal (the
    signals' margin or the stacked model), then whether they beat today's answerer (no reader; its line drawn the
    same way, in 5-fold cross-validation). Returns the ``AnswerSettings`` values and what they were chosen on."""
    update: dict[str, Any] = {}
    report: dict[str, Any] = {}
    reads: list[int] = []
    for key in ("cross", "same"):  # across scripts first: whether the reader reads there shapes the same-script rows
        suffix = "_cross" if key == "cross" else ""
        mine = [c for c in cases if _script(c) == key]
        if key == "same":
            mine = as_read(mine, base.model_copy(update=update))
        rows = replay(unread(mine), base)
        top = per_set_mean([r for r in rows if r["answerable"]], "top_fact")
        cv = cv_refused(stacked(rows, False), max_false)
        print(f"{key}: without the reader: top fact {top:.3f}, refused (5-fold) {cv}", flush=True)
        today = top + refusal_weight * cv["refused_unanswerable"]

        def top_fact(w: float, k: int, mine: list[Case] = mine, suffix: str = suffix, key: str = key) -> float:
            answer = base.model_copy(update={f"reader_weight{suffix}": w, f"refusal_read_{key}": [],
                                             "reader_candidates": k})
            rows = replay(first_read(mine, answer), answer)
            return round(per_set_mean([r for r in rows if r["answerable"]], "top_fact"), 3)

        tops = {w: top_fact(w, CANDIDATES[-1]) for w in WEIGHTS}
        print(f"{key}: top fact by reader weight {tops}", flush=True)
        w = max(WEIGHTS, key=lambda v: (tops[v], -v))  # the least weight among the best
        by_k = {k: top_fact(w, k) for k in CANDIDATES}
        print(f"{key}: top fact by sentences read, at weight {w}: {by_k}", flush=True)
        k = max(CANDIDATES, key=lambda n: (by_k[n], -n))  # the fewest among the best: each read costs ~10 ms
        answer = base.model_copy(update={f"reader_weight{suffix}": w, f"refusal_read_{key}": [],
                                         "reader_candidates": k})
        rows = replay(first_read(mine, answer), answer)
        cvs = {read: cv_refused(stacked(rows, read), max_false) for read in (True, False)}
        read = refusal == "stacked" or (refusal == "auto"
                                        and cvs[True]["refused_unanswerable"] > cvs[False]["refused_unanswerable"])
        print(f"{key}: at weight {w}, {k} read, refused (5-fold) stacked {cvs[True]}, signals' margin {cvs[False]}")
        gain = by_k[k] + refusal_weight * cvs[read]["refused_unanswerable"] - today
        report[key] = {"today": {"top_fact": round(top, 4), "refusal_5fold": cv}, "top_fact": tops,
                       "reader_weight": w, "top_fact_by_read": by_k, "reader_candidates": k,
                       "refusal_5fold": {"stacked": cvs[True], "signals": cvs[False]}, "stacked": read,
                       "gain": round(gain, 4)}
        off = gain <= 0 or (w == 0 and not read)
        if off:  # the reader does not help here: not read, today's answer
            update.update({f"reader_weight{suffix}": 0.0, f"refusal_read_{key}": [], f"hedge_read_{key}": 0.0})
            w = 0.0
        # Its own refusal line, on the sentences as the answerer would then order them (the signals' refusal and
        # hedge as they are): read for it alone where nothing else of it is used.
        answer = base.model_copy(update={**update, f"reader_weight{suffix}": w, "reader_candidates": k})
        floor, floored = fit_read_floor(replay(first_read(mine, answer), answer), max_read_false)
        report[key]["read_floor"] = floored
        print(f"{key}: the reader's own refusal line {floored} -> {floor}", flush=True)
        update[f"read_floor_{key}"] = floor if read_floor else None  # reported; set only when asked for
        if read_floor and floor is not None:
            reads.append(k)
        if off:
            continue
        reads.append(k)
        update[f"reader_weight{suffix}"] = w
        if not read:  # the signals' margin and hedge decide, on the sentences the reader helped order
            update.update({f"refusal_read_{key}": [], f"hedge_read_{key}": 0.0})
            continue
        model = fit_refusal(stacked(rows, True), max_false)
        update[f"refusal_read_{key}"] = model
        answer = answer.model_copy(update={f"refusal_read_{key}": model})
        rows = replay(first_read(mine, answer), answer)
        hedge, hedged = fit_hedge(rows, key == "cross")
        update[f"hedge_read_{key}"] = hedge
        report[key].update(hedge=hedged, refusal_dev=refusal_figures(stacked(rows, True), model))
    update["reader_candidates"] = max(reads, default=base.reader_candidates)
    return update, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], metavar="GOLD=CORPUS")
    ap.add_argument("--dev-set", action="append", default=[], metavar="GOLD=CORPUS",
                    help="a set whose dev and test items both serve as dev (ARCD-train, which is only ever dev)")
    ap.add_argument("--reader", default=CROSS_READER, help="a reader under rag/data/ or an .onnx path")
    ap.add_argument("--max-false-refusal", type=float, default=0.04)
    ap.add_argument("--refusal-weight", type=float, default=1.0)
    ap.add_argument("--read-floor", action="store_true",
                    help="set the reader's own refusal line (read_floor_*) where dev finds it helps; by default it is "
                         "fitted and reported only (for reader-cross-1 it refused answerable seeds items on test)")
    ap.add_argument("--max-read-false-refusal", type=float, default=0.01,
                    help="the share of answerable dev items the reader's own refusal line may refuse beyond the rest")
    ap.add_argument("--refusal", default="signals", choices=["signals", "stacked", "auto"],
                    help="what refuses where the reader reads: the signals' margin (default), the stacked model, or "
                         "the one that refuses more in 5-fold cross-validation on dev (see the module's note)")
    ap.add_argument("--out", type=Path, default=OUT, help="the fitted values (dev); evals/reader/test.json for test")
    ap.add_argument("--cases", type=Path, help="keep the read cases here (pickle), and reuse them when present")
    ap.add_argument("--split", default="dev", choices=["dev", "test"],
                    help="test: fit nothing; compare today's answerer and the reader's at the configured values")
    args = ap.parse_args()
    settings = Settings()
    if args.cases and args.cases.exists():
        cases: list[Case] = pickle.loads(args.cases.read_bytes())
    else:
        reader = load_reader(args.reader, settings.embed.threads)
        if reader is None:
            raise SystemExit(f"the reader {args.reader!r} could not be loaded (sanad train-reader --export …)")
        # Every case read, in both script cases and as deep as the fit looks (CANDIDATES): the fit chooses where
        # the reader reads and how many sentences, whatever the configured values are.
        answerer = replaying(settings.answer.model_copy(
            update={"reader_candidates": max(CANDIDATES), "reader_weight_cross": 1.0}))
        answerer.reader = reader
        seen = trained_on() if args.split == "dev" else set()
        cases = []
        specs = [(s, [args.split]) for s in args.set] + [(s, ["dev", "test"]) for s in args.dev_set]
        for spec, splits in specs:
            gold, corpus = spec.split("=", 1)
            got = [c for split in splits for c in collect(Path(gold), Path(corpus), split, settings)
                   if c.item.id not in seen]
            for c in got:
                answerer.read(c.query, c.sentences, c.passages, c.said)
            print(f"{gold}: {len(got)} items the reader did not train on", flush=True)
            cases += got
        if args.cases:
            args.cases.write_bytes(pickle.dumps(cases))
    if args.split == "test":
        result = {"reader": args.reader, "sets": sorted({c.set for c in cases}), "split": "test",
                  "compare": compare(first_read(cases, settings.answer), settings.answer)}
        print(json.dumps(result, indent=1))
        out = args.out if args.out != OUT else OUT.with_name("test.json")
        out.write_text(json.dumps(result, indent=1) + "\n")
        return
    update, report = fit(cases, settings.answer, args.max_false_refusal, args.refusal_weight, args.refusal,
                         args.max_read_false_refusal, args.read_floor)
    chosen = settings.answer.model_copy(update=update)
    out = {"reader": args.reader, "sets": sorted({c.set for c in cases}), "max_false_refusal": args.max_false_refusal,
           "values": update, "dev": report, "compare_dev": compare(first_read(cases, chosen), chosen)}
    print(json.dumps(out, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
