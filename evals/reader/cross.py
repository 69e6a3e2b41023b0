"""The cross-encoder reader in torch, initialised from the bundled encoder's weights: the question and the
sentence read together, every layer attending across both. Used for training; the product runs the exported
weights in numpy (:mod:`rag.reader`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.encoder import PackedEncoder
from rag.reader import pair_ids
from rag.text import _stopwords, fold


def build(torch: Any, encoder: PackedEncoder, layers: int | None = None) -> Any:
    nn = torch.nn
    cfg = encoder.config
    h, heads = cfg.hidden, cfg.heads
    keep = list(range(layers if layers is not None else cfg.layers))

    class Layer(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(h, 3 * h)
            self.ao = nn.Linear(h, h)
            self.aln = nn.LayerNorm(h, eps=cfg.eps)
            self.fi = nn.Linear(h, cfg.ffn)
            self.fo = nn.Linear(cfg.ffn, h)
            self.oln = nn.LayerNorm(h, eps=cfg.eps)

        def forward(self, x: Any, bias: Any) -> Any:
            n, t, _ = x.shape
            q, k, v = self.qkv(x).view(n, t, 3, heads, h // heads).permute(2, 0, 3, 1, 4)
            ctx = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            x = self.aln(x + self.ao(ctx.transpose(1, 2).reshape(n, t, h)))
            return self.oln(x + self.fo(torch.nn.functional.gelu(self.fi(x))))

    class CrossReader(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.word = nn.Embedding(cfg.vocab, h)
            self.pos = nn.Embedding(cfg.max_positions, h)
            self.type0 = nn.Parameter(torch.zeros(h))
            self.eln = nn.LayerNorm(h, eps=cfg.eps)
            self.layers = nn.ModuleList([Layer() for _ in keep])
            self.head = nn.Linear(h, 1)

        def forward(self, ids: Any, mask: Any) -> Any:
            t = ids.shape[1]
            x = self.eln(self.word(ids) + self.pos.weight[:t] + self.type0)
            bias = torch.zeros(mask.shape, dtype=x.dtype).masked_fill(~mask, -1e9)[:, None, None, :]
            for layer in self.layers:
                x = layer(x, bias)
            m = mask[..., None].to(x.dtype)
            pooled = (x * m).sum(1) / m.sum(1)  # e5's own pooling: the mean over the tokens
            return self.head(pooled).squeeze(-1)

    model = CrossReader()
    sd = {}
    sd["word.weight"] = torch.from_numpy(encoder.embed_rows(np.arange(cfg.vocab)))
    sd["pos.weight"] = torch.from_numpy(encoder._pos.copy())
    sd["type0"] = torch.from_numpy(encoder._type0.copy())
    sd["eln.weight"], sd["eln.bias"] = (torch.from_numpy(a.copy()) for a in encoder._eln)
    for j, i in enumerate(keep):
        qkv_w, qkv_b, ao_w, ao_b, aln_w, aln_b, fi_w, fi_b, fo_w, fo_b, oln_w, oln_b = encoder._layers[i]
        for name, w, b in (("qkv", qkv_w, qkv_b), ("ao", ao_w, ao_b), ("fi", fi_w, fi_b), ("fo", fo_w, fo_b)):
            sd[f"layers.{j}.{name}.weight"] = torch.from_numpy(w.T.copy())
            sd[f"layers.{j}.{name}.bias"] = torch.from_numpy(b.copy())
        for name, w, b in (("aln", aln_w, aln_b), ("oln", oln_w, oln_b)):
            sd[f"layers.{j}.{name}.weight"] = torch.from_numpy(w.copy())
            sd[f"layers.{j}.{name}.bias"] = torch.from_numpy(b.copy())
    sd["head.weight"] = torch.zeros(1, h)
    sd["head.bias"] = torch.zeros(1)
    model.load_state_dict(sd)
    return model


# -- training ---------------------------------------------------------------------------------------------------


@dataclass
class CrossConfig:
    seed: int = 13
    layers: int = 12  # the encoder's first N layers
    epochs: int = 3
    lr: float = 3e-5  # the encoder's layers
    head_lr: float = 1e-3  # the new scoring head
    batch: int = 32
    name: str = "reader-cross-1"  # the exported model's name: in answers' metadata and /readyz
    english_paragraphs: bool = False  # also train on XQuAD's English paragraphs (data.xquad_english_paragraph_items)
    hard_negatives: int = 0  # per question: the answerer's best sentences of other paragraphs (evals.reader.hard)
    swapped: int = 0  # per Arabic question: contrast questions against its answer's sentence (contrast_questions)


_WORD = re.compile(r"[^\W\d_]{4,}")  # a word of four letters or more (names, nouns, qualifiers)


def contrast_questions(question: str, sentence: str, article: str, rng: Any, n: int) -> list[str]:
    """Up to ``n`` copies of ``question``, each with one of its words that ``sentence`` (its answer) holds swapped
    for a word of ``article`` (the other paragraphs of its article) that neither holds: on the same topic, and
    the sentence no longer says what is asked ("who headed the *Hamas* delegation" -> "... the *Israeli*
    delegation"). Negatives that teach the reader to check every qualifier, not the topic."""
    stop = _stopwords()
    said = {fold(w) for w in _WORD.findall(sentence)}
    asked = {fold(w) for w in _WORD.findall(question)}
    held = list(dict.fromkeys(w for w in _WORD.findall(question) if (f := fold(w)) in said and f not in stop))
    pool = list(dict.fromkeys(w for w in _WORD.findall(article)
                              if (f := fold(w)) not in said and f not in asked and f not in stop))
    if not held or not pool:
        return []
    out = []
    for _ in range(n):
        word = rng.choice(held)
        # A definite noun for a definite one ("الإسرائيلي" for "الفلسطيني"), a bare word for a bare one: the
        # question stays well formed more often.
        alike = [w for w in pool if w.startswith("ال") == word.startswith("ال")] or pool
        out.append(re.sub(rf"(?<!\w){re.escape(word)}(?!\w)", rng.choice(alike), question, count=1))
    return out


def training_pairs(items: list[Any], rng: Any, same_paragraph: int = 4, same_article: int = 2,
                   random_sentences: int = 1, hard: dict[str, list[str]] | None = None, swapped: int = 0
                   ) -> list[tuple[str, str, float]]:
    """(question, sentence, label): the answer's sentences; other sentences of its paragraph (on topic, not
    said); sentences of another paragraph of its article; one of any paragraph; ``hard``'s negatives
    (mined from retrieval, :mod:`evals.reader.hard`); and (``swapped``) the answer's sentence against
    :func:`contrast_questions` of an Arabic question."""
    by_group: dict[str, list[Any]] = {}
    for it in items:
        by_group.setdefault(it.group, []).append(it)
    out = []
    for it in items:
        sents = [it.context[s:e] for s, e in it.sentences]
        for i in sorted(it.answer):
            out.append((it.question, sents[i], 1.0))
        others = [s for i, s in enumerate(sents) if i not in it.answer]
        for s in rng.sample(others, min(same_paragraph, len(others))):
            out.append((it.question, s, 0.0))
        same = [o for o in by_group[it.group] if o.context != it.context]
        if same:
            o = rng.choice(same)
            osents = [o.context[s:e] for s, e in o.sentences]
            for s in rng.sample(osents, min(same_article, len(osents))):
                out.append((it.question, s, 0.0))
        for _ in range(random_sentences):
            o = rng.choice(items)
            if o.context != it.context:
                s, e = rng.choice(o.sentences)
                out.append((it.question, o.context[s:e], 0.0))
        out += [(it.question, s, 0.0) for s in (hard or {}).get(it.qid, [])]
        if swapped and it.lang == "ar" and it.answer and same:
            answer = sents[min(it.answer)]
            article = " ".join(o.context for o in same)
            out += [(q, answer, 0.0) for q in contrast_questions(it.question, answer, article, rng, swapped)]
    return out


class CrossScorer:
    """Scores (question, sentence) pairs with a torch cross-encoder, memoised; batches sorted by length."""

    def __init__(self, torch: Any, model: Any, encoder: PackedEncoder, batch: int = 64) -> None:
        self.torch, self.model, self.encoder, self.batch = torch, model, encoder, batch
        self.memo: dict[tuple[str, str], float] = {}

    def score(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
        """The logit of each pair (all pairs read so far)."""
        torch = self.torch
        todo = sorted({p for p in pairs if p not in self.memo})
        if todo:
            encoded = [pair_ids(self.encoder, q, s) for q, s in todo]
            order = sorted(range(len(todo)), key=lambda i: len(encoded[i]))
            self.model.eval()
            with torch.no_grad():
                for j in range(0, len(order), self.batch):
                    chunk = order[j : j + self.batch]
                    ids, mask = _pad(torch, [encoded[i] for i in chunk], self.encoder.tokenizer.eos)
                    for i, v in zip(chunk, self.model(ids, mask).tolist(), strict=True):
                        self.memo[todo[i]] = float(v)
        return self.memo


def _pad(torch: Any, seqs: list[list[int]], pad: int) -> tuple[Any, Any]:
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), t), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = True
    return ids, mask


def evaluate(scorer: CrossScorer, items: list[Any]) -> dict[str, Any]:
    """Pair AUC on answer-sentence-removed pairs and sentence R@1, per question language."""
    from evals.reader.data import removed_pairs
    from evals.reader.measure import by_language, memo_scores, sentence_r1, wanted_pairs

    pairs = list(removed_pairs(items))
    # one batched pass over everything, sorted by length across questions
    memo = scorer.score([(q, s) for q, sents in wanted_pairs(items, pairs).items() for s in sents])
    pair_score, sentences = memo_scores(memo)
    out = by_language(pairs, pair_score)
    out["sentence_r1"] = sentence_r1(items, sentences)
    return out


def train_cross(out: Any, config: Any, log: Any = print) -> Any:
    """Fine-tune the cross-encoder; one checkpoint per epoch (resumed by running the same command again), the
    epoch best on dev (mean pair AUC) kept as ``best.pt``."""
    import json
    import random
    import time
    from dataclasses import asdict
    from pathlib import Path

    import torch

    from evals.reader.data import all_items

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    torch.manual_seed(config.seed)
    encoder = PackedEncoder()
    model = build(torch, encoder, config.layers)
    model.word.weight.requires_grad_(False)  # frozen: the runtime reads word rows from the packed file
    items = all_items(config.english_paragraphs)
    train_items = [it for it in items if it.split == "train"]
    dev_items = [it for it in items if it.split == "dev"]
    hard = None
    if config.hard_negatives:
        from evals.reader.hard import mine

        hard = mine(train_items, config.hard_negatives, out / "hard.json", log)
    params = [p for p in model.parameters() if p.requires_grad]
    head = [model.head.weight, model.head.bias]
    body = [p for p in params if all(p is not h for h in head)]
    with torch.no_grad():  # start from the prior odds of a positive (about one in eight)
        model.head.bias.fill_(-2.0)
    # The head is new: at the body's fine-tuning rate its bias alone would take thousands of steps to move.
    opt = torch.optim.AdamW([{"params": body, "lr": config.lr}, {"params": head, "lr": config.head_lr}],
                            weight_decay=0.01)
    per_epoch = len(training_pairs(train_items, random.Random(config.seed), hard=hard,
                                   swapped=config.swapped)) // config.batch + 1
    total = per_epoch * config.epochs
    warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / (total - warm)))  # warm-up, then linear decay
    )
    ckpt = out / "checkpoint.pt"
    start, history = 0, []
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start, history = state["epoch"], state["history"]
        log(f"resumed after epoch {start}")
    for epoch in range(start, config.epochs):
        t0 = time.time()
        rng = random.Random(config.seed * 1000 + epoch)  # each epoch's sample and order depend on the seed only
        torch.manual_seed(config.seed * 1000 + epoch)
        pairs = training_pairs(train_items, rng, hard=hard, swapped=config.swapped)
        rng.shuffle(pairs)
        # Length buckets: batches of similar length pad less (sorted within windows of 8 batches, then shuffled).
        encoded = {(q, s): pair_ids(encoder, q, s) for q, s, _ in pairs}
        window = config.batch * 8
        batches = []
        for w in range(0, len(pairs), window):
            part = sorted(pairs[w : w + window], key=lambda p: len(encoded[(p[0], p[1])]))
            batches += [part[k : k + config.batch] for k in range(0, len(part), config.batch)]
        rng.shuffle(batches)
        model.train()
        seen, loss_sum = 0, 0.0
        for batch in batches:
            ids, mask = _pad(torch, [encoded[(q, s)] for q, s, _ in batch], encoder.tokenizer.eos)
            labels = torch.tensor([y for _, _, y in batch])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(ids, mask), labels)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            seen += 1
            loss_sum += float(loss.detach())
            if seen % 50 == 0:
                log(f"epoch {epoch + 1} step {seen}/{per_epoch} loss {loss_sum / seen:.4f} {time.time() - t0:.0f}s")
        dev = evaluate(CrossScorer(torch, model, encoder), dev_items)
        history.append({"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "dev": dev,
                        "seconds": round(time.time() - t0)})
        log(json.dumps(history[-1]))
        if max((h["dev"]["mean"] for h in history[:-1]), default=-1.0) < dev["mean"]:
            torch.save(model.state_dict(), out / "best.pt")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "epoch": epoch + 1, "history": history}, ckpt)
        (out / "history.json").write_text(json.dumps(history, indent=2))
    return out / "best.pt"


# -- export ---------------------------------------------------------------------------------------------------


def export_onnx(torch: Any, model: Any, path: Any, name: str, quantize: bool = True) -> Any:
    """The trained cross-encoder as an ONNX graph over word rows (``embeds [B, T, H]``, ``mask [B, T]``) ->
    ``logit [B]``: the word table stays out (the runtime reads it from the packed encoder), the layers are
    quantized to int8 (dynamic, per channel) for size and speed. Returns the written path."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    class OverRows(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, embeds: Any, mask: Any) -> Any:
            m = self.m
            t = embeds.shape[1]
            x = m.eln(embeds + m.pos.weight[:t] + m.type0)
            keep = mask > 0
            bias = torch.zeros(keep.shape, dtype=x.dtype).masked_fill(~keep, -1e9)[:, None, None, :]
            for layer in m.layers:
                x = layer(x, bias)
            w = mask[..., None].to(x.dtype)
            return m.head((x * w).sum(1) / w.sum(1)).squeeze(-1)

    wrapper = OverRows().eval()
    h = model.pos.weight.shape[1]
    example = (torch.randn(2, 9, h), torch.ones(2, 9, dtype=torch.int64))
    raw = path.with_suffix(".fp32.onnx")
    torch.onnx.export(
        wrapper, example, str(raw), input_names=["embeds", "mask"], output_names=["logit"],
        dynamic_axes={"embeds": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"}, "logit": {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    import onnx

    graph = onnx.load(str(raw))
    graph.metadata_props.add(key="sanad_reader", value=name)
    onnx.save(graph, str(raw))
    if not quantize:
        raw.rename(path)
        return path
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(raw), str(path), weight_type=QuantType.QInt8, per_channel=True)
    q = onnx.load(str(path))
    if not any(p.key == "sanad_reader" for p in q.metadata_props):
        q.metadata_props.add(key="sanad_reader", value=name)
        onnx.save(q, str(path))
    raw.unlink()
    return path


def export_best(run: Any, path: Any) -> Any:
    """The run's best epoch as the shipped int8 ONNX reader."""
    import json
    from pathlib import Path

    import torch

    config = CrossConfig(**json.loads((Path(run) / "config.json").read_text()))
    model = build(torch, PackedEncoder(), config.layers)
    model.load_state_dict(torch.load(Path(run) / "best.pt", weights_only=True))
    return export_onnx(torch, model.eval(), path, config.name)
