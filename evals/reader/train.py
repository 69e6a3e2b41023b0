"""Training the reader over the encoder's frozen token states (torch, CPU; ``pip install -e '.[train]'``).

One command: ``sanad train-reader --out runs/reader`` (see docs/reader.md). Seeded; resumable (a checkpoint after
every epoch, picked up by the same command); the run's config and seed are written beside its output, and the
best epoch on the dev split is exported as ``reader.npz`` (numpy only, read by :class:`rag.reader.Reader`).

What is learned (everything else is the frozen encoder): a projection of the centred token states, a weight per
question token from its state, the weight of piece rarity, and a logistic calibration of the alignment and the
pooled cosine. Examples: each question against every sentence of its paragraph (the answer's sentences positive),
sentences of another paragraph of the same article (on topic, not said) and of a random paragraph.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evals.reader.data import ReadingItem, StateCache, all_items
from evals.reader.measure import removed_pair_auc
from rag.encoder import Encoded, PackedEncoder
from rag.reader import ReaderWeights, content_rows, span_rows


@dataclass
class TrainConfig:
    seed: int = 13
    dim: int = 384
    epochs: int = 3
    lr: float = 3e-4
    weight_decay: float = 1e-4
    other_paragraphs: int = 2  # negatives' paragraphs per question: one of its article, one at random
    version: str = "late-1"


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise SystemExit("training needs torch: pip install -e '.[train]' (torch==2.13.0, CPU build)") from exc
    return torch


@dataclass(frozen=True)
class Example:
    q_states: np.ndarray  # content tokens
    q_ids: np.ndarray
    q_vector: np.ndarray
    c_states: np.ndarray  # concatenated passages' tokens
    masks: np.ndarray  # [n_sentences, n_tokens] 1 where a token belongs to the sentence
    labels: np.ndarray  # [n_sentences]


def _sentence_masks(enc: Encoded, spans: tuple[tuple[int, int], ...]) -> np.ndarray:
    m = np.zeros((len(spans), len(enc.ids)), dtype=np.float32)
    for i, (s, e) in enumerate(spans):
        m[i, span_rows(enc, s, e)] = 1.0
    return m


def build_examples(items: list[ReadingItem], cache: StateCache, rng: random.Random, others: int) -> list[Example]:
    by_group: dict[str, list[ReadingItem]] = {}
    for it in items:
        by_group.setdefault(it.group, []).append(it)
    contexts = sorted({it.context for it in items})
    out = []
    for it in items:
        q = cache.get("query: ", [it.question])[0]
        rows = content_rows(q)
        passages = [(it.context, it.sentences, set(it.answer))]
        same = [o for o in by_group[it.group] if o.context != it.context]
        if same and others > 0:
            o = rng.choice(same)
            passages.append((o.context, o.sentences, set()))
        for _ in range(max(others - 1, 0)):
            ctx = rng.choice(contexts)
            if ctx != it.context:
                o = next(x for x in items if x.context == ctx)
                passages.append((o.context, o.sentences, set()))
        states, masks, labels = [], [], []
        width = sum(len(cache.get("passage: ", [c])[0].ids) for c, _, _ in passages)
        at = 0
        for ctx, spans, answer in passages:
            enc = cache.get("passage: ", [ctx])[0]
            m = np.zeros((len(spans), width), dtype=np.float32)
            m[:, at : at + len(enc.ids)] = _sentence_masks(enc, spans)
            keep = m.sum(axis=1) > 0
            states.append(enc.states)
            masks.append(m[keep])
            labels.append(np.array([1.0 if i in answer else 0.0 for i in range(len(spans))], np.float32)[keep])
            at += len(enc.ids)
        out.append(Example(q.states[rows], np.asarray(q.ids)[rows], q.vector, np.concatenate(states),
                           np.concatenate(masks), np.concatenate(labels)))
    return out


class _Model:
    """The trainable part, in torch, mirroring :meth:`rag.reader.Reader.score` exactly."""

    def __init__(self, torch: Any, center: np.ndarray, proj0: np.ndarray, rarity: np.ndarray) -> None:
        t = torch
        self.t = t
        self.center = t.tensor(center)
        self.rarity_table = t.tensor(rarity)
        self.proj = t.nn.Parameter(t.tensor(proj0))
        self.token_u = t.nn.Parameter(t.zeros(center.shape[0]))
        self.token_b = t.nn.Parameter(t.zeros(()))
        self.rarity = t.nn.Parameter(t.ones(()))
        self.abc = t.nn.Parameter(t.tensor([10.0, 5.0, -8.0]))

    def parameters(self) -> list[Any]:
        return [self.proj, self.token_u, self.token_b, self.rarity, self.abc]

    def logits(self, ex: Example) -> Any:
        t = self.t
        qs, cs = t.from_numpy(ex.q_states), t.from_numpy(ex.c_states)
        unit = t.nn.functional.normalize
        pq = unit((qs - self.center) @ self.proj, dim=-1)
        pc = unit((cs - self.center) @ self.proj, dim=-1)
        sim = pq @ pc.T  # [nq, nc]
        masks = t.from_numpy(ex.masks)  # [ns, nc]
        best = (sim[None, :, :] + (masks[:, None, :] - 1.0) * 1e4).amax(dim=-1)  # [ns, nq]
        w = t.nn.functional.softplus(qs @ self.token_u + self.token_b) * self.rarity_table[ex.q_ids] ** self.rarity
        align = best @ (w / w.sum())
        pooled = unit(masks @ cs / masks.sum(dim=1, keepdim=True), dim=-1) @ t.from_numpy(ex.q_vector)
        a, b, c = self.abc
        return a * align + b * pooled + c

    def export(self, name: str) -> ReaderWeights:
        d = lambda x: x.detach().numpy().astype(np.float32)  # noqa: E731
        a, b, c = (float(v) for v in self.abc.detach())
        return ReaderWeights(name, d(self.center), d(self.proj), d(self.token_u), float(self.token_b.detach()),
                             float(self.rarity.detach()), a, b, c)


def train(out: Path, config: TrainConfig, cache_dir: Path, log: Any = print) -> Path:
    torch = _torch()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    # numpy: the reference pass, the one the cached token states and the published figures came from
    encoder = PackedEncoder(runtime="numpy")
    cache = StateCache(encoder, cache_dir)
    cache.load()
    items = all_items()
    train_items = [it for it in items if it.split == "train"]
    dev_items = [it for it in items if it.split == "dev"]
    log(f"{len(train_items)} training questions, {len(dev_items)} dev; encoding what the cache lacks")
    examples = build_examples(train_items, cache, random.Random(config.seed), config.other_paragraphs)
    # Centre and initial projection: the training passages' token states (mean; top principal directions).
    states = np.concatenate([cache.get("passage: ", [c])[0].states for c in sorted({i.context for i in train_items})])
    center = states.mean(axis=0).astype(np.float32)
    _, _, vt = np.linalg.svd(states[:: max(1, len(states) // 20000)] - center, full_matrices=False)
    model = _Model(torch, center, vt[: config.dim].T.copy().astype(np.float32),
                   np.maximum(-np.asarray(encoder.tokenizer._scores, np.float32), 1e-3))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ckpt = out / "checkpoint.pt"
    start, history = 0, []
    if ckpt.exists():  # resume where the last run stopped
        state = torch.load(ckpt, weights_only=False)
        for p, v in zip(model.parameters(), state["params"], strict=True):
            p.data.copy_(v)
        opt.load_state_dict(state["opt"])
        start, history = state["epoch"], state["history"]
        torch.set_rng_state(state["torch_rng"])
        log(f"resumed after epoch {start}")
    order_rng = random.Random(config.seed)
    for _ in range(start):
        order_rng.shuffle(list(range(len(examples))))
    for epoch in range(start, config.epochs):
        t0 = time.time()
        order = list(range(len(examples)))
        order_rng.shuffle(order)
        total = 0.0
        for i in order:
            ex = examples[i]
            logits = model.logits(ex)
            labels = torch.from_numpy(ex.labels)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
            if labels.sum() > 0:  # and the answer's sentence first among the candidates
                loss = loss + torch.nn.functional.cross_entropy(logits[None], labels[None] / labels.sum())
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        weights = model.export(config.version)
        dev = removed_pair_auc(weights, dev_items, cache)
        history.append({"epoch": epoch + 1, "loss": total / len(examples), "dev": dev, "seconds": time.time() - t0})
        log(json.dumps(history[-1]))
        if max((h["dev"]["mean"] for h in history[:-1]), default=-1.0) < dev["mean"]:
            weights.save(out / "reader.npz")
        torch.save({"params": [p.detach().clone() for p in model.parameters()], "opt": opt.state_dict(),
                    "epoch": epoch + 1, "history": history, "torch_rng": torch.get_rng_state()}, ckpt)
        (out / "history.json").write_text(json.dumps(history, indent=2))
    return out / "reader.npz"
