"""The reader's pair AUC on "answer sentence removed" pairs: a question against its whole paragraph (holds the
answer) and against the same paragraph with the answer's sentences cut (same topic and names, answer gone). A
paragraph's score is its best sentence's. Per question language; the paragraphs are Arabic."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from evals.reader.data import Pair, ReadingItem, StateCache, removed_pairs
from rag.reader import Reader, ReaderWeights

PairScore = Callable[[Pair], float]


def pair_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a positive outscores a negative (ties count half)."""
    from scipy.stats import rankdata

    r = rankdata(scores)
    pos = labels == 1
    npos, nneg = int(pos.sum()), int((~pos).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    return float((r[pos].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def by_language(pairs: list[Pair], score: PairScore) -> dict[str, Any]:
    labels = np.array([p.label for p in pairs])
    scores = np.array([score(p) for p in pairs])
    langs = np.array([p.item.lang for p in pairs])
    out: dict[str, Any] = {}
    for lang in sorted(set(langs)):
        sel = langs == lang
        out[lang] = round(pair_auc(labels[sel], scores[sel]), 4)
        out[f"{lang}_pairs"] = int(sel.sum())
    out["mean"] = round(float(np.mean([out[k] for k in sorted(set(langs))])), 4)
    return out


def reader_score(reader: Reader, cache: StateCache) -> PairScore:
    def score(p: Pair) -> float:
        q = reader.question(cache.get("query: ", [p.item.question])[0])
        s = reader.score(q, cache.get("passage: ", [p.context])[0], list(p.sentences))
        return float(s.max()) if len(s) else -1e9

    return score


def bi_encoder_score(cache: StateCache) -> PairScore:
    """Today's signal: each sentence encoded on its own, its cosine with the question's vector."""

    def score(p: Pair) -> float:
        q = cache.get("query: ", [p.item.question])[0].vector
        sents = [p.context[s:e] for s, e in p.sentences]
        return max((float(e.vector @ q) for e in cache.get("passage: ", sents)), default=-1.0)

    return score


def removed_pair_auc(weights: ReaderWeights, items: Iterable[ReadingItem], cache: StateCache) -> dict[str, Any]:
    reader = Reader(weights, cache.encoder.tokenizer._scores)
    return by_language(list(removed_pairs(items)), reader_score(reader, cache))


def sentence_r1(items: Iterable[ReadingItem], scores: Callable[[ReadingItem], np.ndarray]) -> dict[str, Any]:
    """Share of questions whose paragraph's best-scored sentence holds the answer (paragraphs of 2+ sentences)."""
    hits: dict[str, list[float]] = {}
    for it in items:
        if len(it.sentences) < 2:
            continue
        s = scores(it)
        hits.setdefault(it.lang, []).append(1.0 if int(np.argmax(s)) in it.answer else 0.0)
    return {lang: round(float(np.mean(v)), 4) for lang, v in sorted(hits.items())}


def reader_sentences(reader: Reader, cache: StateCache) -> Callable[[ReadingItem], np.ndarray]:
    def scores(it: ReadingItem) -> np.ndarray:
        q = reader.question(cache.get("query: ", [it.question])[0])
        return reader.score(q, cache.get("passage: ", [it.context])[0], list(it.sentences))

    return scores


def bi_encoder_sentences(cache: StateCache) -> Callable[[ReadingItem], np.ndarray]:
    def scores(it: ReadingItem) -> np.ndarray:
        q = cache.get("query: ", [it.question])[0].vector
        sents = cache.get("passage: ", [it.context[s:e] for s, e in it.sentences])
        return np.array([float(e.vector @ q) for e in sents])

    return scores


def run(out: Any, weights: list[Any], cache_dir: Any, cross_readers: list[str] | None = None) -> dict[str, Any]:
    """``sanad bench reader``: pair AUC and sentence R@1 on the reader's dev and test splits, for today's
    bi-encoder, the untrained alignment, each trained late reader given and each cross-encoder (names under
    rag/data/ or .onnx paths; the shipped one by default), with scoring speed."""
    import time

    from evals.bench.common import Report
    from evals.reader.data import all_items
    from rag.encoder import PackedEncoder

    report = Report("reader", "Reader: answer sentence removed pairs (pair AUC) and sentence R@1", out)
    # numpy: the reference pass, the one the cached token states and the published figures came from
    cache = StateCache(PackedEncoder(runtime="numpy"), cache_dir)
    cache.load()
    items = all_items()
    train = [i for i in items if i.split == "train"]
    center = np.concatenate([cache.get("passage: ", [c])[0].states for c in sorted({i.context for i in train})])
    readers: list[tuple[str, PairScore | None, Callable[[ReadingItem], np.ndarray]]] = [
        ("bi-encoder (today: each sentence on its own)", bi_encoder_score(cache), bi_encoder_sentences(cache)),
    ]
    scores = cache.encoder.tokenizer._scores
    for w in [ReaderWeights.untrained(center.mean(axis=0)), *(ReaderWeights.load(p) for p in weights)]:
        r = Reader(w, scores)
        readers.append((w.name, reader_score(r, cache), reader_sentences(r, cache)))
    from rag.reader import CROSS_READER, load_reader

    crosses = [c for name in (cross_readers or [CROSS_READER]) if (c := load_reader(name)) is not None]
    rows: list[list[Any]] = []
    data: dict[str, Any] = {}
    for split in ("dev", "test"):
        chosen = [i for i in items if i.split == split]
        pairs = list(removed_pairs(chosen))
        split_readers = list(readers)
        for cross in crosses:
            t0 = time.perf_counter()
            memo = cross_scores(cross, chosen, pairs)
            seconds = time.perf_counter() - t0
            data[f"{split}/{cross.name}/seconds"] = round(seconds, 1)
            report.note(f"{split}: {cross.name} read {len(memo)} (question, sentence) pairs in {seconds:.1f} s, "
                        f"{seconds * 1000 / max(len(memo), 1):.1f} ms each, tokenizing included (its table row "
                        "times only the lookups).")

            split_readers.append((f"{cross.name} (cross-encoder, int8 ONNX)", *memo_scores(memo)))
        for name, pair_score, sent_scores in split_readers:
            assert pair_score is not None
            t0 = time.perf_counter()
            auc = by_language(pairs, pair_score)
            r1 = sentence_r1(chosen, sent_scores)
            ms = (time.perf_counter() - t0) * 1000 / (len(pairs) + len(chosen))
            data[f"{split}/{name}"] = {"auc": auc, "sentence_r1": r1}
            rows.append([split, name, auc.get("ar"), auc.get("en"), r1.get("ar"), r1.get("en"), ms])
    report.table("Pair AUC (ar, en questions over Arabic paragraphs) and sentence R@1",
                 ["split", "reader", "AUC ar", "AUC en", "R@1 ar", "R@1 en", "ms/read (states cached)"], rows)
    report.note(f"pairs: {len(list(removed_pairs(i for i in items if i.split == 'test')))} test; splits as in "
                "evals/reader/data.py (XQuAD test half = the eval harness's; ARCD-train 20% of articles dev).")
    report.data["results"] = data
    report.write()
    return data


def wanted_pairs(items: list[ReadingItem], pairs: list[Pair]) -> dict[str, set[str]]:
    """Each question's sentences that the pairs and the items need read."""
    wanted: dict[str, set[str]] = {}
    for p in pairs:
        wanted.setdefault(p.item.question, set()).update(p.context[s:e] for s, e in p.sentences)
    for it in items:
        wanted.setdefault(it.question, set()).update(it.context[s:e] for s, e in it.sentences)
    return wanted


def cross_scores(reader: Any, items: list[ReadingItem], pairs: list[Pair]) -> dict[tuple[str, str], float]:
    """Every (question, sentence) the pairs and items need, read once by the cross reader."""
    wanted = wanted_pairs(items, pairs)
    memo: dict[tuple[str, str], float] = {}
    for q, sents in wanted.items():
        ordered = sorted(sents)
        for s, v in zip(ordered, reader.score(q, ordered), strict=True):
            memo[(q, s)] = float(v)
    return memo


def memo_scores(memo: dict[tuple[str, str], float]) -> tuple[PairScore, Callable[[ReadingItem], np.ndarray]]:
    def pair_score(p: Pair) -> float:
        return max((memo[(p.item.question, p.context[s:e])] for s, e in p.sentences), default=-1e9)

    def sent_scores(it: ReadingItem) -> np.ndarray:
        return np.array([memo[(it.question, it.context[s:e])] for s, e in it.sentences])

    return pair_score, sent_scores


def release_auc(reader: Any, per_language: int = 150, seed: int = 13) -> dict[str, float]:
    """For ``sanad eval``: the reader's pair AUC on answer-sentence-removed pairs of a seeded sample of the
    XQuAD test half (``per_language`` questions each, Arabic and English over Arabic), nothing fitted on it.
    Empty when the datasets are not beside the repository."""
    import random

    from evals.reader.data import SHARED, xquad_items

    if not (SHARED / "xquad").exists():
        return {}
    test = [it for it in xquad_items() if it.split == "test"]
    rng = random.Random(seed)
    chosen = []
    for lang in ("ar", "en"):
        mine = [it for it in test if it.lang == lang]
        chosen += rng.sample(mine, min(per_language, len(mine)))
    pairs = list(removed_pairs(chosen))
    pair_score, _ = memo_scores(cross_scores(reader, [], pairs))
    auc = by_language(pairs, pair_score)
    return {lang: auc[lang] for lang in ("ar", "en") if lang in auc}
