"""``sanad bench stories``: how many near-duplicate (syndicated) articles a news archive holds.

Reads the archive with Sanad's own readers, gives each article a story the way ``sanad index``
does (``index/stories.py``: MinHash of word 3-shingles, LSH, estimated Jaccard >= the threshold),
and reports the counts, plus a seeded random sample of flagged pairs written out to be checked
by eye (``stories_sample.md``: both titles, outlets and openings side by side).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from evals.bench.common import console
from index.readers import Skipped, iter_files, read_path
from index.stories import THRESHOLD, StoryIndex
from rag.models import Article
from rag.settings import IndexSettings


class _NoStore:
    """A StoryIndex that starts empty (nothing stored yet)."""

    def iter_documents(self, *_: Any, **__: Any) -> list[dict[str, Any]]:
        return []


def run(paths: list[Path], out: Path, threshold: float = THRESHOLD, sample: int = 50, seed: int = 7) -> dict[str, Any]:
    settings = IndexSettings()
    stories = StoryIndex(_NoStore(), threshold)  # type: ignore[arg-type]
    articles: dict[str, Article] = {}
    empty = 0
    t0 = time.perf_counter()
    for f in iter_files(paths):
        for item in read_path(f, settings.max_file_bytes):
            if isinstance(item, Skipped):
                empty += item.reason == "empty"
                continue
            articles[item.id] = item
            stories.assign(item.id, item.text[item.body_start :])
    seconds = time.perf_counter() - t0
    groups = stories.members()
    pairs = [(g[0], other) for g in groups.values() for other in g[1:]]  # each copy against the story's first
    rng = random.Random(seed)
    picked = rng.sample(pairs, min(sample, len(pairs)))
    same_outlet = sum(articles[a].source == articles[b].source for a, b in pairs)
    drawn: list[dict[str, Any]] = [{"a": a, "b": b, "similarity": round(stories.similar(a, b), 3)} for a, b in picked]
    result: dict[str, Any] = {
        "articles": len(articles), "empty_skipped": empty, "threshold": threshold,
        "stories_with_copies": len(groups), "articles_in_them": sum(len(g) for g in groups.values()),
        "copies": len(pairs), "copies_share": round(len(pairs) / max(len(articles), 1), 4),
        "copies_in_the_same_outlet": same_outlet,
        "largest_story": max((len(g) for g in groups.values()), default=0),
        "story_sizes": dict(sorted(Counter(len(g) for g in groups.values()).items())),
        "seconds": round(seconds, 1),
        "sample": drawn,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "stories.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    lines = [f"# Near-duplicate sample ({len(picked)} of {len(pairs)} flagged pairs, seed {seed})", ""]
    for i, pair in enumerate(drawn, 1):
        a, b = articles[pair["a"]], articles[pair["b"]]
        lines.append(f"## {i}. similarity {pair['similarity']}")
        for art in (a, b):
            opening = " ".join(art.text[art.body_start :].split())[:220]
            lines.append(f"- `{art.id}` {art.source or '?'} {art.date or ''}: **{art.title[:90]}** — {opening}")
        lines.append("")
    (out / "stories_sample.md").write_text("\n".join(lines), encoding="utf-8")
    console.print({k: v for k, v in result.items() if k != "sample"})
    return result
