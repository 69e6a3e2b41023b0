"""SQuAD-format files (XQuAD) to a Sanad corpus and gold file: each paragraph a document,
each question an item whose fact is its answer span and whose source is its paragraph."""

from __future__ import annotations

import json
from pathlib import Path


def convert(
    squad: Path, out: Path, questions: Path | None = None, lang: str | None = None, question_lang: str | None = None
) -> tuple[Path, Path]:
    """Write ``corpus.jsonl`` and ``gold.jsonl`` under ``out``.

    ``questions``: a parallel SQuAD file (same question ids) whose questions are asked
    instead, e.g. English questions over Arabic paragraphs. Answers (facts) stay those
    of ``squad``, since they must be found in its paragraphs.
    """
    data = json.loads(squad.read_text(encoding="utf-8"))
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
                fc.write(
                    json.dumps(
                        {"id": doc_id, "title": art["title"].replace("_", " "), "text": p["context"]},
                        ensure_ascii=False,
                    )
                    + "\n"
                )
                for q in p["qas"]:
                    answers = list(dict.fromkeys(a["text"] for a in q["answers"]))
                    item = {
                        "id": q["id"],
                        "lang": qlang,
                        "question": asked.get(q["id"], q["question"]),
                        "facts": [answers],
                        "sources": [doc_id],
                        "answerable": True,
                    }
                    fg.write(json.dumps(item, ensure_ascii=False) + "\n")
    return corpus, gold
