"""Running gold items against Sanad: in process on a fresh store, or over HTTP against a running service."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx

from evals.gold import GoldItem
from evals.metrics import ItemResult, score_item
from rag.engine import Sanad
from rag.models import Answer
from rag.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GOLD = REPO / "evals" / "gold" / "seeds.jsonl"
DEFAULT_CORPUS = REPO / "seeds"
DEFAULT_THRESHOLDS = REPO / "evals" / "thresholds.toml"
RETRIEVE_DOCS = 10


class Target(Protocol):
    def run(self, item: GoldItem) -> tuple[Answer, list[str], float]:
        """The answer, the ranked distinct retrieved doc ids, and the answer latency in ms."""
        ...


def distinct_docs(doc_ids: list[str], k: int = RETRIEVE_DOCS) -> list[str]:
    return list(dict.fromkeys(doc_ids))[:k]


class InProcessTarget:
    def __init__(self, engine: Sanad) -> None:
        self.engine = engine

    def run(self, item: GoldItem) -> tuple[Answer, list[str], float]:
        t0 = time.perf_counter()
        answer = self.engine.ask(item.question, history=item.turns)
        latency = (time.perf_counter() - t0) * 1000
        passages = self.engine.search(answer.rewritten_question or item.question, top_k=40)
        return answer, distinct_docs([p.doc_id for p in passages]), latency


class HttpTarget:
    """A running ``sanad serve``: answers through the OpenAI-compatible endpoint (it carries history)."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def run(self, item: GoldItem) -> tuple[Answer, list[str], float]:
        messages = [t.model_dump() for t in item.turns] + [{"role": "user", "content": item.question}]
        t0 = time.perf_counter()
        r = self.client.post("/v1/chat/completions", json={"model": "sanad", "messages": messages})
        latency = (time.perf_counter() - t0) * 1000
        r.raise_for_status()
        answer = Answer.model_validate(r.json()["sanad"])
        s = self.client.post("/v1/search", json={"query": answer.rewritten_question or item.question, "top_k": 40})
        s.raise_for_status()
        return answer, distinct_docs([p["doc_id"] for p in s.json()["passages"]]), latency


@contextmanager
def corpus_engine(corpus: list[Path], base: Settings | None = None) -> Iterator[Sanad]:
    """A fresh in-memory store with ``corpus`` indexed; the user's own index is never touched."""
    from index.ingest import Indexer

    base = base or Settings()
    with tempfile.TemporaryDirectory(prefix="sanad-eval-") as tmp:
        # A fresh embedded store in the temporary folder (the configured engine, never a server).
        qdrant = base.qdrant.model_copy(update={"url": None, "path": None, "collection": "eval"})
        # The vector cache is content-addressed: the user's one is reused, so vectors are computed once.
        embed = base.embed.model_copy(update={"cache_path": base.vector_cache_path})
        settings = base.model_copy(update={"data_dir": Path(tmp), "qdrant": qdrant, "embed": embed})
        engine = Sanad.open(settings)
        try:
            summary = Indexer(engine.store, engine.encoder, engine.embedder, settings.index).index_paths(corpus)
            if not summary.documents:
                raise ValueError(f"nothing indexed from {', '.join(map(str, corpus))}")
            yield engine
        finally:
            engine.close()


def run_items(
    target: Target, items: list[GoldItem], on_item: Callable[[ItemResult], None] | None = None
) -> list[ItemResult]:
    results = []
    for item in items:
        answer, retrieved, latency = target.run(item)
        result = score_item(item, answer, retrieved, latency)
        results.append(result)
        if on_item:
            on_item(result)
    return results


def judge_faithfulness(settings: Settings, results: list[ItemResult]) -> None:
    """Model-judged share of each answer's claims supported by its cited quotes (LLM configured only)."""
    from llama_index.core.base.llms.types import ChatMessage, MessageRole

    from rag.llm import LLMClient, LLMError

    client = LLMClient(settings.llm)
    for r in results:
        if r.refused or not r.citations:
            continue
        quotes = "\n".join(f"[{c['n']}] {c['quote']}" for c in r.citations)
        prompt = (
            f"Quotes:\n{quotes}\n\nAnswer:\n{r.answer}\n\nWhat fraction (0 to 1) of the answer's claims "
            "is supported by the quotes? Reply with the number only."
        )
        try:
            reply = client.chat([ChatMessage(role=MessageRole.USER, content=prompt)])
            r.faithfulness = max(0.0, min(1.0, float(reply.strip().split()[0])))
        except (LLMError, ValueError, IndexError):
            r.faithfulness = None


def result_dict(r: ItemResult) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(r)
