"""Reading data: questions, their Arabic paragraph split into the product's sentences, and which sentences
hold the answer; the "answer sentence removed" pairs the reader is judged on; and a disk cache of the
encoder's token states so training and measuring encode each text once.

Splits, fixed and seeded:
- XQuAD (``shared/datasets/xquad``): articles halved by :func:`evals.squad.convert`'s own rule (seed 13), so the
  reader's ``test`` half is the eval harness's XQuAD test half; of the other half, a seeded fifth of the articles
  is ``dev`` and the rest ``train``. English questions are
  read against the parallel Arabic paragraph (the product's case: English questions over Arabic news).
- ARCD-train (``shared/datasets/arcd-train``): articles split 80/20 into ``train`` and ``dev`` (seed 13); ``dev``
  picks the epoch and fits nothing else.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.encoder import Encoded, PackedEncoder
from rag.sentences import answer_spans

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
SEED = 13


@dataclass(frozen=True)
class ReadingItem:
    qid: str
    lang: str  # the question's language; the paragraph is Arabic
    question: str
    context: str
    sentences: tuple[tuple[int, int], ...]
    answer: frozenset[int]  # indices into ``sentences`` holding an answer
    group: str  # article title: one topic stays on one side of a split
    source: str
    split: str


def _answer_sentences(spans: list[tuple[int, int]], answers: Iterable[dict[str, Any]]) -> frozenset[int]:
    hits = set()
    for a in answers:
        start = a.get("answer_start", -1)
        if start is None or start < 0:
            continue
        for i, (s, e) in enumerate(spans):
            if s <= start < e:
                hits.add(i)
    return frozenset(hits)


def _xquad_split(titles: list[str]) -> dict[str, str]:
    # the same rule as evals.squad.convert (seed 13: articles shuffled, first half dev)
    rng = random.Random(SEED)
    shuffled = titles[:]
    rng.shuffle(shuffled)
    return {t: ("dev" if i < len(shuffled) // 2 else "test") for i, t in enumerate(shuffled)}


def _reader_splits(titles: list[str]) -> dict[str, str]:
    """Article title -> the reader's split: the harness's test half, and of its dev half a seeded fifth as dev."""
    split = _xquad_split(titles)
    rest = sorted(t for t, sp in split.items() if sp == "dev")
    random.Random(SEED).shuffle(rest)
    reader_dev = set(rest[: round(len(rest) * 0.2)])
    return {t: "test" if sp == "test" else ("dev" if t in reader_dev else "train") for t, sp in split.items()}


def xquad_items(root: Path = SHARED / "xquad") -> list[ReadingItem]:
    ar = json.loads((root / "xquad.ar.json").read_text(encoding="utf-8"))
    en = json.loads((root / "xquad.en.json").read_text(encoding="utf-8"))
    ours = _reader_splits([a["title"] for a in ar["data"]])
    english = {qa["id"]: qa["question"] for art in en["data"] for p in art["paragraphs"] for qa in p["qas"]}
    items = []
    for art in ar["data"]:
        for p in art["paragraphs"]:
            asked = [(f"xquad-{lang}-{qa['id']}", lang, question.strip(), qa["answers"]) for qa in p["qas"]
                     for lang, question in (("ar", qa["question"]), ("en", english.get(qa["id"]))) if question]
            items += _paragraph_items(p["context"], asked, art["title"], "xquad", ours[art["title"]])
    return items


def xquad_english_paragraph_items(root: Path = SHARED / "xquad") -> list[ReadingItem]:
    """The train half's questions read against XQuAD's *English* paragraphs (English and Arabic questions):
    more reading for the cross-script direction, whose only in-product case (English over Arabic) has few
    training questions. Training only: dev and test stay Arabic paragraphs."""
    ar = json.loads((root / "xquad.ar.json").read_text(encoding="utf-8"))
    en = json.loads((root / "xquad.en.json").read_text(encoding="utf-8"))
    arabic = {qa["id"]: qa["question"] for art in ar["data"] for p in art["paragraphs"] for qa in p["qas"]}
    ours = _reader_splits([a["title"] for a in ar["data"]])
    items = []
    for art, art_ar in zip(en["data"], ar["data"], strict=True):
        if ours[art_ar["title"]] != "train":
            continue
        for p in art["paragraphs"]:
            asked = [(f"xquad-en-{lang}-{qa['id']}", lang, question.strip(), qa["answers"]) for qa in p["qas"]
                     for lang, question in (("en", qa["question"]), ("ar", arabic.get(qa["id"]))) if question]
            items += _paragraph_items(p["context"], asked, f"en:{art['title']}", "xquad-en", "train")
    return items


def _paragraph_items(context: str, asked: list[tuple[str, str, str, list[dict[str, Any]]]], group: str,
                     source: str, split: str) -> list[ReadingItem]:
    """One item per question ``(id, language, question, answers)`` whose answer starts in a sentence."""
    spans = answer_spans(context)
    items = []
    for qid, lang, question, answers in asked:
        answer = _answer_sentences(spans, answers)
        if answer:
            items.append(ReadingItem(qid, lang, question, context, tuple(spans), answer, group, source, split))
    return items


def arcd_items(path: Path = SHARED / "arcd-train" / "arcd-train.json", dev_share: float = 0.2) -> list[ReadingItem]:
    data = json.loads(path.read_text(encoding="utf-8"))
    titles = sorted({a["title"] for a in data["data"]})
    random.Random(SEED).shuffle(titles)
    dev = set(titles[: round(len(titles) * dev_share)])
    items = []
    for art in data["data"]:
        for p in art["paragraphs"]:
            asked = [(f"arcd-{qa['id']}", "ar", qa["question"].strip(" -\n\t"), qa["answers"]) for qa in p["qas"]]
            split = "dev" if art["title"] in dev else "train"
            items += _paragraph_items(p["context"], asked, art["title"], "arcd", split)
    return items


def all_items(english_paragraphs: bool = False) -> list[ReadingItem]:
    return xquad_items() + arcd_items() + (xquad_english_paragraph_items() if english_paragraphs else [])


def without(item: ReadingItem) -> tuple[str, tuple[tuple[int, int], ...]] | None:
    """The paragraph with the answer's sentences cut out (the rest of it, its topic and names, stays), and its
    sentence spans; ``None`` when nothing would be left."""
    kept = [item.context[s:e] for i, (s, e) in enumerate(item.sentences) if i not in item.answer]
    if not kept:
        return None
    text = " ".join(kept)
    return text, tuple(answer_spans(text))


@dataclass(frozen=True)
class Pair:
    """A question against a paragraph, with the paragraph's sentences; ``label`` 1 when it holds the answer."""

    item: ReadingItem
    context: str
    sentences: tuple[tuple[int, int], ...]
    label: int


def removed_pairs(items: Iterable[ReadingItem]) -> Iterator[Pair]:
    """Each question with its whole paragraph (1) and with the answer's sentences removed (0)."""
    for it in items:
        rest = without(it)
        if rest is None:
            continue
        yield Pair(it, it.context, it.sentences, 1)
        yield Pair(it, rest[0], rest[1], 0)


@dataclass
class StateCache:
    """Token states by (prefix, text), kept in memory and in one ``.npz``-per-batch folder on disk (float16)."""

    encoder: PackedEncoder
    folder: Path | None = None
    _mem: dict[str, Encoded] = field(default_factory=dict)

    @staticmethod
    def key(prefix: str, text: str) -> str:
        return hashlib.sha1(f"{prefix}\x00{text}".encode()).hexdigest()

    def load(self) -> None:
        if self.folder is None or not self.folder.exists():
            return
        for f in sorted(self.folder.glob("*.npz")):
            with np.load(f, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                for k, ids, spans in meta:
                    self._mem[k] = Encoded(ids, [tuple(s) for s in spans], z[k].astype(np.float32),  # type: ignore[misc]
                                           z[k + "_v"].astype(np.float32))

    def get(self, prefix: str, texts: list[str]) -> list[Encoded]:
        keys = [self.key(prefix, t) for t in texts]
        todo = sorted({(k, t) for k, t in zip(keys, texts, strict=True) if k not in self._mem})
        if todo:
            fresh = self.encoder.encode([t for _, t in todo], prefix)
            for (k, _), enc in zip(todo, fresh, strict=True):
                self._mem[k] = enc
            if self.folder is not None:
                self.folder.mkdir(parents=True, exist_ok=True)
                arrays = {k: e.states.astype(np.float16) for (k, _), e in zip(todo, fresh, strict=True)}
                arrays |= {k + "_v": e.vector for (k, _), e in zip(todo, fresh, strict=True)}
                meta = [[k, e.ids, e.spans] for (k, _), e in zip(todo, fresh, strict=True)]
                name = hashlib.sha1("".join(k for k, _ in todo).encode()).hexdigest()[:16]
                np.savez(self.folder / f"{name}.npz", meta=json.dumps(meta), **arrays)  # type: ignore[arg-type]
        return [self._mem[k] for k in keys]
