"""``sanad feedback export``: 👍/👎 clicks as JSONL lines that can seed new gold items.

Each line::

    {"question", "answer", "rating": "up"|"down", "user", "channel", "ts", "rated_at",
     "answerable", "citations": [doc ids], "turns": [...],
     "gold": {"id", "lang", "question", "turns", "facts": [], "sources", "answerable"}, "review": "..."}

``gold`` follows ``evals/gold.py``. What it claims follows the rating: a 👍
keeps what the bot said (its cited documents as sources, or unanswerable for a
refusal); a 👎 flips it (a wrong answer becomes "unanswerable", a wrong refusal
becomes "answerable" with no sources yet). ``facts`` is always empty and
``review`` says what a person still has to fill in before the item goes into a
gold file.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from rag.settings import Settings
from service.slack.store import DB_NAME, SlackStore


def _review(rating: str, answerable: bool) -> str:
    if rating == "up" and answerable:
        return "Add the facts a correct answer must state; check the sources."
    if rating == "up":
        return "Confirmed refusal: ready as an unanswerable item."
    if answerable:
        return ("Rated wrong: either the articles do not answer this (keep answerable=false), or set "
                "answerable=true with the right sources and facts.")
    return "Rated a wrong refusal: add the sources that answer it and the facts."


def feedback_line(row: dict[str, Any]) -> dict[str, Any]:
    answered = bool(row["answerable"])
    rating = row["rating"]
    citations = json.loads(row["citations"])
    turns = json.loads(row["turns"])
    gold_answerable = answered if rating == "up" else not answered
    gold = {
        "id": f"slack-{row['answer_id'][:12]}-{row['user']}".lower(),
        "lang": row["language"],
        "question": row["question"],
        "turns": turns,
        "facts": [],
        "sources": citations if (rating == "up" and answered) else [],
        "answerable": gold_answerable,
    }
    return {
        "question": row["question"], "answer": row["answer"], "rating": rating, "user": row["user"],
        "channel": row["f_channel"] or row["channel"], "ts": row["f_ts"] or row["message_ts"],
        "rated_at": row["rated_at"], "answerable": answered, "citations": citations, "turns": turns,
        "gold": gold, "review": _review(rating, answered),
    }


def export_feedback(settings: Settings, out: TextIO) -> int:
    """Write every stored rating as a JSONL line to ``out``; returns the number of lines."""
    if settings.database.url is None and not (settings.data_dir / DB_NAME).is_file():
        return 0
    store = SlackStore.open(settings.data_dir, settings.database.url)
    n = 0
    try:
        for row in store.feedback_rows():
            out.write(json.dumps(feedback_line(row), ensure_ascii=False) + "\n")
            n += 1
    finally:
        store.close()
    return n
