"""Eval reports: terminal table, report.json / report.md, thresholds, and baseline comparison."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from rich.table import Table

from evals.metrics import ItemResult
from evals.runner import result_dict

# Shown in this order; lower is better for the ones in LOWER_IS_BETTER.
METRICS = [
    "hit@1",
    "hit@5",
    "hit@10",
    "mrr@10",
    "fact_recall",
    "all_facts",
    "citation_precision",
    "citation_support",
    "refusal_rate",
    "false_refusal_rate",
    "hedged",
    "unanswerable_confident",
    "reader_pair_auc",
    "confident_right",
    "language_match",
    "latency_p50_ms",
    "latency_p95_ms",
    "faithfulness_model_judged",
]
LOWER_IS_BETTER = {"false_refusal_rate", "hedged", "unanswerable_confident", "latency_p50_ms", "latency_p95_ms"}


def summary_table(summary: dict[str, dict[str, Any]]) -> Table:
    groups = list(summary)
    table = Table("metric", *groups, title="Sanad eval")
    for m in METRICS:
        if any(m in summary[g] for g in groups):
            table.add_row(m, *[_fmt(summary[g].get(m)) for g in groups])
    table.add_row("items", *[str(summary[g]["items"]) for g in groups])
    return table


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) and v <= 1 else str(v)


def check_thresholds(summary: dict[str, dict[str, Any]], path: Path) -> list[str]:
    """Missed thresholds, one line each. File: ``[group.min]`` / ``[group.max]`` tables of metric = bound."""
    spec = tomllib.loads(path.read_text(encoding="utf-8"))
    missed = []
    for group, bounds in spec.items():
        if group not in summary:
            continue
        for kind, metrics in bounds.items():
            for metric, bound in metrics.items():
                value = summary[group].get(metric)
                if value is None:
                    continue
                if (kind == "min" and value < bound) or (kind == "max" and value > bound):
                    word = "below" if kind == "min" else "above"
                    missed.append(f"{group} {metric} = {value} is {word} the threshold {bound}")
    return missed


def compare(results: list[ItemResult], summary: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """What got better or worse since ``baseline`` (a previous report.json), item by item."""
    before = {i["id"]: i for i in baseline.get("items", [])}
    better, worse = [], []
    for r in results:
        b = before.get(r.id)
        if b is None:
            continue
        notes_b: list[str] = []
        notes_w: list[str] = []
        nf, bf = len(r.facts_found), len(b.get("facts_found", []))
        if nf != bf:
            (notes_b if nf > bf else notes_w).append(f"facts {bf}->{nf}")
        if r.refused != b.get("refused"):
            good = r.refused != r.answerable  # refusing an unanswerable item, or answering an answerable one
            (notes_b if good else notes_w).append("refused" if r.refused else "answered")
        hb, hr = b.get("hit_rank"), r.hit_rank
        if hb != hr and r.answerable:
            (notes_b if (hr or 99) < (hb or 99) else notes_w).append(f"hit rank {hb}->{hr}")
        if notes_b:
            better.append({"id": r.id, "changes": notes_b})
        if notes_w:
            worse.append({"id": r.id, "changes": notes_w})
    deltas = {}
    for group, metrics in summary.items():
        old = baseline.get("summary", {}).get(group, {})
        for m, v in metrics.items():
            if isinstance(v, int | float) and isinstance(old.get(m), int | float) and v != old[m]:
                deltas[f"{group}.{m}"] = {"before": old[m], "after": v}
    return {"better": better, "worse": worse, "metric_changes": deltas}


def write_report(
    folder: Path,
    summary: dict[str, Any],
    results: list[ItemResult],
    meta: dict[str, Any],
    missed: list[str],
    comparison: dict[str, Any] | None,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, "summary": summary, "thresholds_missed": missed, "items": [result_dict(r) for r in results]}
    if comparison is not None:
        report["comparison"] = comparison
    (folder / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    groups = list(summary)
    lines = [
        "# Sanad eval report",
        "",
        f"- gold: `{meta.get('gold')}`",
        f"- target: {meta.get('target')}",
        f"- answerer: {meta.get('answerer')}",
        f"- when: {meta.get('when')}",
        "",
        "| metric | " + " | ".join(groups) + " |",
        "|---|" + "---|" * len(groups),
    ]
    for m in METRICS:
        if any(m in summary[g] for g in groups):
            lines.append(f"| {m} | " + " | ".join(_fmt(summary[g].get(m)) for g in groups) + " |")
    lines += ["", "## Thresholds", ""] + ([f"- MISSED: {m}" for m in missed] or ["- all met"])
    if comparison is not None:
        lines += ["", "## Against the baseline", ""]
        lines += [f"- better: {c['id']} ({', '.join(c['changes'])})" for c in comparison["better"]]
        lines += [f"- worse: {c['id']} ({', '.join(c['changes'])})" for c in comparison["worse"]]
    failing = [r for r in results if r.facts_missed or (r.refused == r.answerable)]
    if failing:
        lines += ["", "## Items with a miss", ""]
        for r in failing:
            why = (
                "wrongly refused"
                if r.refused and r.answerable
                else (
                    "answered an unanswerable question"
                    if not r.refused and not r.answerable
                    else "missed: " + "; ".join(" / ".join(f) for f in r.facts_missed)
                )
            )
            lines.append(f"- `{r.id}` ({r.lang}): {why}")
    (folder / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
