"""``sanad bench furniture``: page furniture offered as answer sentences, before and after this release.

Over an archive's article bodies, two counts of the sentences the answerer may quote:

* **furniture**: a line that is only a link, a "watch / read more / follow us / share" call or a photo credit
  (``rag.sentences.is_furniture``), still offered as a sentence;
* **broken tokens**: a sentence boundary inside a URL, an e-mail address or a number like 2.5 (the piece
  before it ends mid-token: «شاهد الآن: https://www.»).

"Before" is the previous splitter (kept here verbatim) with every sentence offered; "after" is
``rag.sentences.answer_spans``. Furniture stays in the article text either way: offsets do not move.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from evals.bench.common import Report
from index.readers import Skipped, iter_files, read_path
from rag.sentences import _URL_RE, answer_spans, is_furniture, sentence_spans
from rag.settings import Settings

# The splitter of the previous release, for the "before" count.
_OLD_PIECE = re.compile(r"[^.!?؟؛\n]*(?:[.!?؟؛]+[\"'”»)\]]*\s*|\n\s*|$)")
_DECIMAL = re.compile(r"\d+(?:\.\d+)+")


def _inside_tokens(text: str) -> list[tuple[int, int]]:
    return [m.span() for pat in (_URL_RE, _DECIMAL) for m in pat.finditer(text)]


def count(text: str, spans: list[tuple[int, int]]) -> tuple[int, int, list[str]]:
    """Furniture sentences, sentences cut inside a URL/e-mail/decimal, and examples of both."""
    tokens = _inside_tokens(text)
    furniture = broken = 0
    examples = []
    for s, e in spans:
        sentence = text[s:e]
        cut = any(a < e < b for a, b in tokens)
        if is_furniture(sentence):
            furniture += 1
            examples.append(sentence)
        elif cut:
            broken += 1
            examples.append(sentence)
    return furniture, broken, examples


def run(paths: list[Path], out: Path, examples: int = 12) -> dict[str, Any]:
    rep = Report("furniture", "Page furniture offered as answer sentences", out)
    fields = Settings().index.field_map
    totals: Counter[str] = Counter()
    seen: dict[str, list[str]] = {"before": [], "after": []}
    for f in iter_files(paths):
        for a in read_path(f, 1 << 30, fields):
            if isinstance(a, Skipped):
                continue
            body = a.text[a.body_start :]
            totals["articles"] += 1
            for label, spans in (("before", sentence_spans(body, _OLD_PIECE)), ("after", answer_spans(body))):
                furniture, broken, ex = count(body, spans)
                totals[f"{label} sentences"] += len(spans)
                totals[f"{label} furniture"] += furniture
                totals[f"{label} broken"] += broken
                if len(seen[label]) < examples:
                    seen[label] += ex[: examples - len(seen[label])]
    rep.data.update(totals)
    rep.data["examples_before"] = seen["before"]
    rep.table(f"{totals['articles']} articles ({len(list(iter_files(paths)))} files)",
              ["", "answer sentences", "furniture", "cut inside a URL, e-mail or number"],
              [[label, totals[f"{label} sentences"], totals[f"{label} furniture"], totals[f"{label} broken"]]
               for label in ("before", "after")], digits=0)
    rep.note("Examples counted before: " + " | ".join(f"«{e[:80]}»" for e in seen["before"]))
    rep.write()
    return rep.data
