"""Hard negatives from retrieval: the sentences the answerer itself ranks highest for a training question that are
not in its paragraph (so they do not hold its answer, as far as the data says).

The reader was trained on its own paragraph's and article's sentences, but it is used on the best-ranked sentences
of five retrieved passages. This mines, for each training question, the answerer's own candidates over the
training paragraphs only (no dev or test text enters training), ranked by the calibrated signals, and keeps the
best ``per_question`` from other paragraphs. Mined once per run and kept beside it (``hard.json``), so a resumed
run trains on the same negatives.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from rag.text import fold_cached


def mine(items: list[Any], per_question: int, path: Path, log: Any = print) -> dict[str, list[str]]:
    """``{qid: [sentence, ...]}`` for the training ``items``, read from ``path`` when it exists."""
    if path.exists():
        return dict(json.loads(path.read_text(encoding="utf-8")))
    from evals.runner import corpus_engine
    from rag.settings import Settings

    paragraphs = {it.context: (it.group, it.source) for it in items}
    with tempfile.TemporaryDirectory(prefix="sanad-hard-") as tmp:
        corpus = Path(tmp) / "train.jsonl"
        corpus.write_text("".join(
            json.dumps({"id": f"p{i}", "title": group, "text": text}, ensure_ascii=False) + "\n"
            for i, (text, (group, _)) in enumerate(paragraphs.items())), encoding="utf-8")
        out: dict[str, list[str]] = {}
        with corpus_engine([corpus], Settings()) as engine:
            for n, it in enumerate(items, 1):
                passages, vector = engine.retrieve(it.question)
                sentences = engine.extractive.candidates(it.question, passages, vector)
                engine.extractive.combine(sentences, passages)
                own = fold_cached(it.context)
                picked: list[str] = []
                for s in sorted(sentences, key=lambda s: -s.score):
                    if len(picked) == per_question:
                        break
                    text = fold_cached(s.text)
                    if text in own or any(text == fold_cached(p) for p in picked):
                        continue  # its own paragraph's sentences are sampled with their labels already
                    picked.append(s.text)
                out[it.qid] = picked
                if n % 200 == 0:
                    log(f"hard negatives: {n}/{len(items)} questions")
    path.write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    return out
