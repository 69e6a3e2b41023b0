"""Prometheus metrics through ``prometheus_client``, in one :class:`CollectorRegistry` per app.

Not the library's global default registry: tests build many apps in one process, and each app
(one server process owns the store) has its own numbers. ``/metrics`` renders :meth:`Metrics.render`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from rag.embedding import Embedder, EmbedderUnavailable, EmbeddingError
from rag.models import Answer

if TYPE_CHECKING:
    from rag.engine import Sanad

CONTENT_TYPE = CONTENT_TYPE_LATEST

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OUTCOMES = ("added", "updated", "unchanged")  # index.ingest.Outcome
EMBEDDER_FAILURES = ("unavailable", "error")  # cannot run on this machine; a call that failed


class _ScrapeGauges:
    """Gauges read at scrape time (index size, store up, conversations): only those given to this scrape."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[str, float]] = {}

    def collect(self) -> Iterator[Metric]:
        for name, (help_, value) in self.values.items():
            yield GaugeMetricFamily(name, help_, value=value)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.started = time.time()
        r = self.registry
        self.requests = Counter("sanad_http_requests", "HTTP requests by method, route template and status.",
                                ["method", "route", "status"], registry=r)
        self.request_seconds = Histogram("sanad_http_request_duration_seconds",
                                         "HTTP request latency by method and route template (streams: until the end).",
                                         ["method", "route"], buckets=REQUEST_BUCKETS, registry=r)
        self.stage_seconds = Histogram("sanad_stage_duration_seconds",
                                       "Time spent retrieving and answering, per answer.",
                                       ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.answers = Counter("sanad_answers", "Answers by endpoint, answerer and whether the articles had one.",
                               ["endpoint", "answerer", "answerable"], registry=r)
        self.refusals = Counter("sanad_refusals", "Answers saying the articles do not contain an answer.",
                                registry=r)
        self.hedged = Counter("sanad_hedged_answers", "Answers offered as the closest the articles come "
                              "(close to the refusal line: confident false).", registry=r)
        self.degraded = Counter("sanad_degraded_answers", "Answers given offline because the configured LLM failed.",
                                registry=r)
        self.llm_failures = Counter("sanad_llm_failures", "Answers for which the configured LLM failed "
                                    "(unreachable, slow or garbled; the answer is then degraded).", registry=r)
        self.embedder_failures = Counter("sanad_embedder_failures",
                                         "Embedder calls that failed (unavailable: it cannot run on this machine); "
                                         "retrieval is then lexical only.", ["reason"], registry=r)
        self.documents = Counter("sanad_documents_indexed", "Documents sent through the API, by outcome.",
                                 ["outcome"], registry=r)
        start = Gauge("sanad_start_time_seconds", "Start time of the process, seconds since the epoch.", registry=r)
        start.set(self.started)
        for stage in ("retrieval", "answer"):
            self.stage_seconds.labels(stage)
        for reason in EMBEDDER_FAILURES:
            self.embedder_failures.labels(reason)
        for outcome in OUTCOMES:
            self.documents.labels(outcome)
        self._scrape = _ScrapeGauges()
        r.register(self._scrape)
        self._render_lock = threading.Lock()

    # -- recording ---------------------------------------------------------
    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """``route`` is a route template or ``unmatched``, never a raw path (bounded label values)."""
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route).observe(seconds)

    def observe_answer(self, answer: Answer, retrieval_ms: float, answer_ms: float, endpoint: str) -> None:
        self.answers.labels(endpoint, answer.answerer, str(answer.answerable).lower()).inc()
        if not answer.answerable:
            self.refusals.inc()
        elif not answer.confident:
            self.hedged.inc()
        if answer.degraded:  # only set when an LLM is configured and failed (rewrite or answer)
            self.degraded.inc()
            self.llm_failure()
        self.stage_seconds.labels("retrieval").observe(retrieval_ms / 1000.0)
        self.stage_seconds.labels("answer").observe(answer_ms / 1000.0)

    def observe_document(self, outcome: str) -> None:
        self.documents.labels(outcome).inc()

    def llm_failure(self) -> None:
        self.llm_failures.inc()

    def embedder_failure(self, reason: str = "error") -> None:
        self.embedder_failures.labels(reason).inc()

    # -- exposition --------------------------------------------------------
    def render(self, gauges: dict[str, tuple[str, float]] | None = None) -> bytes:
        """The registry in the text format, with ``gauges`` (name: (help, value)) read for this scrape."""
        with self._render_lock:
            self._scrape.values = dict(gauges or {})
            try:
                return generate_latest(self.registry)
            finally:
                self._scrape.values = {}


class FailureCountingEmbedder:
    """An embedder that reports its failures before raising them. The engine falls back to lexical retrieval
    quietly when its embedder fails (``rag/retrieval.py``, ``index/ingest.py``): this is where the service
    sees it happen."""

    def __init__(self, inner: Embedder, on_failure: Callable[[str], None]) -> None:
        self.inner = inner
        self.on_failure = on_failure
        self.signature = inner.signature
        self.dimension = inner.dimension

    def _counted(self, call: Callable[[], list[list[float]]]) -> list[list[float]]:
        try:
            return call()
        except EmbedderUnavailable:
            self.on_failure("unavailable")
            raise
        except EmbeddingError:
            self.on_failure("error")
            raise

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._counted(lambda: self.inner.embed_documents(texts))

    def embed_query(self, text: str) -> list[float]:
        return self._counted(lambda: [self.inner.embed_query(text)])[0]

    @property
    def runs_on(self) -> str:
        return self.inner.runs_on

    def warm(self) -> None:
        self.inner.warm()


def count_embedder_failures(engine: Sanad, metrics: Metrics) -> None:
    """Count ``engine``'s embedder failures in ``metrics`` (vectors read from the cache never fail). An engine
    shared by several apps (tests) reports to the last one that started."""
    cached = engine.embedder
    if cached is None:
        return
    if isinstance(cached.inner, FailureCountingEmbedder):
        cached.inner.on_failure = metrics.embedder_failure
    else:
        cached.inner = FailureCountingEmbedder(cached.inner, metrics.embedder_failure)
