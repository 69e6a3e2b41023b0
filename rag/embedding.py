"""Dense embedders. Offline there is none (lexical retrieval measured best);
an OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, TEI) is one setting away."""

from __future__ import annotations

from typing import Protocol

from rag.settings import EmbedSettings


class EmbeddingError(RuntimeError):
    """The embeddings endpoint failed or answered with the wrong shape."""


class Embedder(Protocol):
    signature: str
    dimension: int

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint through llama-index."""

    def __init__(self, settings: EmbedSettings) -> None:
        from llama_index.embeddings.openai import OpenAIEmbedding

        assert settings.dimension is not None
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


def build_embedder(settings: EmbedSettings) -> Embedder | None:
    if settings.backend == "openai":
        return OpenAIEmbedder(settings)
    return None
