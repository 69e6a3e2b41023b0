"""Prometheus metrics, exposition format 0.0.4 written by hand (no extra dependency).

Counters and histograms live in memory per process (one server process owns
the store, so one set of numbers).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict
from collections.abc import Iterable

from rag.models import Answer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Iterable[tuple[str, str]] = ()) -> str:
    items = [*labels, *extra]
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.total = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.total += 1


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.requests: dict[Labels, int] = defaultdict(int)
        self.request_seconds: dict[Labels, _Histogram] = {}
        self.stage_seconds: dict[Labels, _Histogram] = {}
        self.answers: dict[Labels, int] = defaultdict(int)
        self.refusals = 0
        self.degraded = 0
        self.documents: dict[Labels, int] = defaultdict(int)

    # -- recording ---------------------------------------------------------
    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(("method", method), ("route", route), ("status", str(status)))] += 1
            key = (("route", route),)
            hist = self.request_seconds.get(key)
            if hist is None:
                hist = self.request_seconds[key] = _Histogram(REQUEST_BUCKETS)
            hist.observe(seconds)

    def observe_answer(self, answer: Answer, retrieval_ms: float, answer_ms: float, endpoint: str) -> None:
        with self._lock:
            self.answers[(("endpoint", endpoint), ("answerer", answer.answerer),
                          ("answerable", str(answer.answerable).lower()))] += 1
            if not answer.answerable:
                self.refusals += 1
            if answer.degraded:
                self.degraded += 1
            for stage, ms in (("retrieval", retrieval_ms), ("answer", answer_ms)):
                key = (("stage", stage),)
                hist = self.stage_seconds.get(key)
                if hist is None:
                    hist = self.stage_seconds[key] = _Histogram(STAGE_BUCKETS)
                hist.observe(ms / 1000.0)

    def observe_document(self, outcome: str) -> None:
        with self._lock:
            self.documents[(("outcome", outcome),)] += 1

    # -- exposition --------------------------------------------------------
    def render(self, gauges: dict[str, tuple[str, float]] | None = None) -> str:
        out: list[str] = []

        def counter(name: str, help_: str, values: dict[Labels, int]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} counter")
            for labels, v in sorted(values.items()):
                out.append(f"{name}{_labels(labels)} {v}")

        def histogram(name: str, help_: str, values: dict[Labels, _Histogram]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} histogram")
            for labels, h in sorted(values.items()):
                cumulative = 0
                for bound, n in zip((*h.buckets, float("inf")), h.counts, strict=True):
                    cumulative += n
                    out.append(f"{name}_bucket{_labels(labels, [('le', _num(bound))])} {cumulative}")
                out.append(f"{name}_sum{_labels(labels)} {h.sum!r}")
                out.append(f"{name}_count{_labels(labels)} {h.total}")

        with self._lock:
            counter("sanad_http_requests_total", "HTTP requests by method, route and status.", self.requests)
            histogram("sanad_http_request_duration_seconds", "HTTP request latency (streams: until the end).",
                      self.request_seconds)
            histogram("sanad_stage_duration_seconds", "Time spent retrieving and answering, per answer.",
                      self.stage_seconds)
            counter("sanad_answers_total", "Answers by endpoint, answerer and whether the articles had one.",
                    self.answers)
            counter("sanad_refusals_total", "Answers saying the articles do not contain an answer.",
                    {(): self.refusals})
            counter("sanad_degraded_answers_total", "Answers given offline because the configured LLM failed.",
                    {(): self.degraded})
            counter("sanad_documents_indexed_total", "Documents sent through the API, by outcome.", self.documents)
        out.append("# HELP sanad_start_time_seconds Start time of the process, seconds since the epoch.")
        out.append("# TYPE sanad_start_time_seconds gauge")
        out.append(f"sanad_start_time_seconds {self.started!r}")
        for name, (help_, value) in (gauges or {}).items():
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} gauge")
            out.append(f"{name} {_num(value)}")
        return "\n".join(out) + "\n"
