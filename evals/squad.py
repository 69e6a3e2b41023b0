"""SQuAD-format files (XQuAD) to a Sanad corpus and gold file: each paragraph a document,
each question an item whose fact is its answer span and whose source is its paragraph."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from rag.sentences import split_sentences


def without_answer(paragraph: dict[str, Any], rng: random.Random) -> str | None:
    """The paragraph's text with the sentences holding one (seeded) question's answers taken out, or
    ``None`` when nothing would be left. The rest of the paragraph stays: the same topic, names and
    often words of the question, only not its answer (the SQuAD 2.0 kind of unanswerable question)."""
    text = paragraph["context"]
    qa = rng.choice(paragraph["qas"])
    starts = {a["answer_start"] for a in qa["answers"] if a.get("answer_start", -1) >= 0}
    kept, at = [], 0
    for piece in split_sentences(text):
        end = at + len(piece)
        if not any(at <= s < end for s in starts):
            kept.append(piece)
        at = end
    rest = "".join(kept).strip()
    return rest if rest and rest != text.strip() else None


def convert(
    squad: Path,
    out: Path,
    questions: Path | None = None,
    lang: str | None = None,
    question_lang: str | None = None,
    leave_out: float = 0.0,
    seed: int = 13,
    drop_answer: float = 0.0,
) -> tuple[Path, Path]:
    """Write ``corpus.jsonl`` and ``gold.jsonl`` under ``out``.

    ``questions``: a parallel SQuAD file (same question ids) whose questions are asked
    instead, e.g. English questions over Arabic paragraphs. Answers (facts) stay those
    of ``squad``, since they must be found in its paragraphs.

    ``leave_out``: a seeded share of the paragraphs is kept out of the corpus, and their
    questions become unanswerable items. They look like real questions, and the articles'
    other paragraphs are on the same topic: the hard case for refusal.

    ``drop_answer``: in a seeded share of the paragraphs kept, the sentences that answer one of their
    questions are taken out (``without_answer``); each question of such a paragraph whose answer is no
    longer in it becomes unanswerable, although its paragraph, minus one sentence, is still there.

    Every item gets a ``split``: the articles (not paragraphs, so one topic stays on one
    side) are shuffled with ``seed`` and halved into ``dev``, where thresholds are fitted,
    and ``test``, which no threshold sees.
    """
    data = json.loads(squad.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    titles = [art["title"] for art in data["data"]]
    shuffled = titles[:]
    rng.shuffle(shuffled)
    split = {t: ("dev" if i < len(shuffled) // 2 else "test") for i, t in enumerate(shuffled)}
    keys = [(art["title"], i) for art in data["data"] for i in range(len(art["paragraphs"]))]
    left_out = set(rng.sample(keys, round(len(keys) * leave_out))) if leave_out else set()
    kept_keys = [k for k in keys if k not in left_out]
    cut = set(rng.sample(kept_keys, round(len(kept_keys) * drop_answer))) if drop_answer else set()
    asked: dict[str, str] = {}
    if questions is not None:
        for art in json.loads(questions.read_text(encoding="utf-8"))["data"]:
            for p in art["paragraphs"]:
                asked.update({q["id"]: q["question"] for q in p["qas"]})
    out.mkdir(parents=True, exist_ok=True)
    corpus, gold = out / "corpus.jsonl", out / "gold.jsonl"
    qlang = question_lang or ("en" if questions is not None else lang or "ar")
    with corpus.open("w", encoding="utf-8") as fc, gold.open("w", encoding="utf-8") as fg:
        for art in data["data"]:
            for i, p in enumerate(art["paragraphs"]):
                doc_id = f"{art['title']}_{i}".replace(" ", "_").replace("/", "_")
                gone = (art["title"], i) in left_out
                cut_here = (art["title"], i) in cut
                text = (without_answer(p, rng) if cut_here else None) or p["context"]
                for q in p["qas"]:
                    answers = list(dict.fromkeys(a["text"] for a in q["answers"]))
                    held = not gone and (not cut_here or any(a in text for a in answers))
                    item = {
                        "id": q["id"],
                        "lang": qlang,
                        "question": asked.get(q["id"], q["question"]),
                        "facts": [answers] if held else [],
                        "sources": [doc_id] if held else [],
                        "answerable": held,
                        "split": split[art["title"]],
                    }
                    fg.write(json.dumps(item, ensure_ascii=False) + "\n")
                if gone:
                    continue
                fc.write(
                    json.dumps(
                        {"id": doc_id, "title": art["title"].replace("_", " "), "text": text},
                        ensure_ascii=False,
                    )
                    + "\n"
                )
    return corpus, gold
