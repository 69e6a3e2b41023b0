"""Slack text in and out: questions cleaned of Slack markup, answers rendered as safe Block Kit messages.

Safety: every piece of text that comes from an article, a question or the model
goes through :func:`neutralize` (``&``, ``<``, ``>`` escaped as Slack asks, so
``<!channel>``, ``<@U…>`` and ``<#C…>`` cannot form; ``@channel``, ``@here`` and
``@everyone`` broken with a zero-width joiner). Messages are also sent with
``parse="none"`` and ``link_names=False``.

Limits (Slack's): section and context text 3000 characters, 50 blocks per
message, message ``text`` 40000 characters. Long answers are split at sentence
ends, else at spaces; a single word longer than a block is the only thing ever
cut.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

from rag.models import Answer, Citation, Language
from service.sources import also_in_text

SECTION_LIMIT = 3000
MAX_BLOCKS = 50
TEXT_LIMIT = 40000
QUOTE_CHARS = 280

# Slack's broadcast keywords; a zero-width joiner after "@" keeps them from pinging.
_BROADCAST = re.compile(r"@(?=(channel|here|everyone)\b)", re.IGNORECASE)
ZWJ = "\u200d"

FEEDBACK_UP = "sanad_feedback_up"
FEEDBACK_DOWN = "sanad_feedback_down"

TEXTS: dict[str, dict[Language, str]] = {
    "searching": {"ar": "⏳ جارٍ البحث…", "en": "⏳ Searching…"},
    "sources": {"ar": "*المصادر*", "en": "*Sources*"},
    "failed": {"ar": "تعذّر الحصول على إجابة الآن. حاول مرة أخرى بعد قليل.",
               "en": "Sorry, I could not answer that right now. Please try again in a moment."},
    "too_long": {"ar": "السؤال طويل جدًا؛ اختصره من فضلك.", "en": "The question is too long; please shorten it."},
    "thanks": {"ar": "شكرًا على تقييمك.", "en": "Thanks for the feedback."},
    "helpful": {"ar": "هل كانت الإجابة مفيدة؟", "en": "Was this helpful?"},
}

USAGE = ("اسألني سؤالًا عن الأخبار، مثلًا: `@Sanad من شارك في الاجتماع الأمني الذي استضافته القاهرة؟`\n"
         "Ask me a question about the news, e.g. `@Sanad Who attended the security meeting in Cairo?` "
         "or use `/sanad QUESTION`. I read text only, not files.")


# -- in: questions -------------------------------------------------------------------------------

_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#[A-Z0-9]+(?:\|([^>]*))?>")
_SPECIAL = re.compile(r"<!([^>|]+)(?:\|([^>]*))?>")
_LINK = re.compile(r"<([^>|]+)(?:\|([^>]*))?>")


def clean_question(text: str, bot_user_id: str | None = None) -> str:
    """Plain text of a Slack message: the bot's mention dropped, other markup reduced to its label."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    text = _USER.sub(" ", text)
    text = _CHANNEL.sub(lambda m: f"#{m.group(1)}" if m.group(1) else " ", text)
    text = _SPECIAL.sub(" ", text)
    text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
    text = html.unescape(text)
    return re.sub(r"[ \t]+", " ", text).strip()


# -- out: safe text ---------------------------------------------------------------------------------

def neutralize(text: str) -> str:
    """Text safe to put in a Slack message: no markup can form, no broadcast can ping."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@" + ZWJ, text)


def plain(text: str, limit: int) -> str:
    """Neutralized text within ``limit`` characters, cut at a word boundary with an ellipsis."""
    safe = neutralize(" ".join(text.split()))
    if len(safe) <= limit:
        return safe
    cut = safe.rfind(" ", 0, limit)
    cut = cut if cut > limit // 2 else _safe_cut(safe, limit - 1)
    return safe[:cut].rstrip(" .،,") + "…"


_SENTENCE_END = re.compile(r"(?<=[.!?؟…\]»\"”])\s+|\n+")
_SPACE = re.compile(r"\s+")
_ENTITY = re.compile(r"&(amp|lt|gt);")


def _safe_cut(text: str, cut: int) -> int:
    """Move a hard cut back out of an ``&amp;``-style entity or a joiner pair."""
    for m in _ENTITY.finditer(text, max(0, cut - 5), cut + 5):
        if m.start() < cut < m.end():
            return m.start()
    if 0 < cut < len(text) and text[cut] == ZWJ:
        return cut - 1
    return cut


def split_text(text: str, limit: int) -> list[str]:
    """Pieces of at most ``limit`` characters, cut at sentence ends, else spaces, never inside a word
    (unless one word alone is longer than ``limit``)."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = 0
        for m in _SENTENCE_END.finditer(window):
            if m.start() <= limit:
                cut = m.start()
        if cut < limit // 2:
            spaces = [m.start() for m in _SPACE.finditer(window) if m.start() <= limit]
            if spaces and spaces[-1] > 0:
                cut = max(cut, spaces[-1])
        if cut <= 0:
            cut = _safe_cut(rest, limit)
        piece, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if piece:
            pieces.append(piece)
    if rest:
        pieces.append(rest)
    return pieces


# -- out: messages -----------------------------------------------------------------------------

@dataclass
class Message:
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def source_line(c: Citation, lang: Language) -> str:
    title = plain(c.title, 300) if c.title.strip() else ""
    doc_id = plain(c.doc_id, 200).replace("`", "'")
    quote = plain(c.quote, QUOTE_CHARS)
    opener, closer = ("«", "»") if lang == "ar" else ("“", "”")
    head = f"*[{c.n}]* {title} · `{doc_id}`" if title else f"*[{c.n}]* `{doc_id}`"
    where = ", ".join(plain(x, 100) for x in (c.source, c.date) if x)
    if where:
        head += f" · {where}"
    line = f"{head}\n{opener}{quote}{closer}" if quote else head
    if also := also_in_text(c, lang):  # the other outlets that ran the same wire story
        line += f"\n_{plain(also, 300)}_"
    return line


def feedback_block(answer_id: str, lang: Language) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": "sanad_feedback",
        "elements": [
            {"type": "button", "action_id": FEEDBACK_UP, "value": answer_id,
             "text": {"type": "plain_text", "text": "👍", "emoji": True},
             "accessibility_label": TEXTS["helpful"][lang] + " 👍"},
            {"type": "button", "action_id": FEEDBACK_DOWN, "value": answer_id,
             "text": {"type": "plain_text", "text": "👎", "emoji": True},
             "accessibility_label": TEXTS["helpful"][lang] + " 👎"},
        ],
    }


def render_answer(answer: Answer, answer_id: str | None = None) -> list[Message]:
    """The answer as one or more messages: mrkdwn sections with its [n] markers, then the sources
    (none for a refusal), then the 👍/👎 buttons on the last message."""
    lang = answer.language
    sections = split_text(neutralize(answer.answer.strip()), SECTION_LIMIT) or [neutralize(TEXTS["failed"][lang])]
    content: list[tuple[dict[str, Any], str]] = [(_section(p), p) for p in sections]
    if answer.answerable and answer.citations:
        content.append((_context(TEXTS["sources"][lang]), ""))
        for c in answer.citations:
            content.append((_context(source_line(c, lang)), f"[{c.n}] {c.doc_id}"))

    per_message = MAX_BLOCKS - 1  # one block kept for the buttons
    messages: list[Message] = []
    blocks: list[dict[str, Any]] = []
    texts: list[str] = []
    size = 0
    for block, text in content:
        if blocks and (len(blocks) >= per_message or size + len(text) + 1 > TEXT_LIMIT - 1000):
            messages.append(Message("\n".join(t for t in texts if t), blocks))
            blocks, texts, size = [], [], 0
        blocks.append(block)
        texts.append(text)
        size += len(text) + 1
    messages.append(Message("\n".join(t for t in texts if t), blocks))
    for m in messages:
        if not m.text:  # a sources-only message: its notification text names the sources
            m.text = neutralize(TEXTS["sources"][lang].strip("*"))
    if answer_id:
        messages[-1].blocks.append(feedback_block(answer_id, lang))
    return messages


def simple(text: str) -> Message:
    """A short bot-written message (usage hint, error); still neutralized."""
    safe = neutralize(text)
    return Message(safe, [_section(safe)])
