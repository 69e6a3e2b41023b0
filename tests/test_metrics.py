"""``/metrics`` as Prometheus reads it: parsed with prometheus_client's own parser, labelled by route template."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from rag.embedding import EmbeddingError
from rag.engine import Sanad
from rag.models import Answer
from rag.settings import Settings
from service.app import create_app
from service.metrics import FailureCountingEmbedder, Metrics
from tests.conftest import SEED_IDS

Q_WHO = "من شارك في الاجتماع الأمني الذي استضافته القاهرة؟"
Q_NOT_IN_SEEDS = "كم منتجا شارك في مهرجان التمور في واحة سيوة؟"


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape: (sample name, labels) -> value."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample with exactly these labels, or ``None`` when it is absent."""
    return scrape(text).get((name, frozenset(labels.items())))


def routes(text: str, status: str | None = None) -> set[str]:
    """The ``route`` labels of the request counter (with ``status``, only those)."""
    return {dict(labels)["route"] for (name, labels) in scrape(text)
            if name == "sanad_http_requests_total" and (status is None or dict(labels)["status"] == status)}


@pytest.fixture
def client(seeded_engine: Sanad, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings.in_memory(tmp_path), seeded_engine)) as c:
        yield c


def test_every_served_route_is_labelled_by_its_template(client: TestClient) -> None:
    assert client.post("/v1/chat", json={"question": Q_WHO}).status_code == 200
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect", "/", "/healthz", "/static/index.html"):
        assert client.get(path).status_code == 200, path
    assert client.get(f"/v1/sessions/{uuid.uuid4().hex}").status_code == 404
    assert client.get("/v1/chat").status_code == 405
    assert client.get("/no/such/page/42").status_code == 404
    text = client.get("/metrics").text

    ok = routes(text, "200")
    assert {"/v1/chat", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect", "/", "/healthz",
            "/static/{path}"} <= ok
    assert "unmatched" not in ok
    assert sample(text, "sanad_http_requests_total", method="GET", route="/v1/sessions/{session_id}",
                  status="404") == 1
    assert sample(text, "sanad_http_requests_total", method="GET", route="/v1/chat", status="405") == 1
    # Only the path no route serves is unmatched; raw paths never become labels.
    assert sample(text, "sanad_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert not any("42" in r or "static/index" in r for r in routes(text))

    assert sample(text, "sanad_http_request_duration_seconds_count", method="POST", route="/v1/chat") == 1
    assert sample(text, "sanad_http_request_duration_seconds_bucket", method="POST", route="/v1/chat",
                  le="+Inf") == 1
    assert sample(text, "sanad_http_request_duration_seconds_bucket", method="GET", route="/docs", le="60.0") == 1


def test_answers_refusals_and_index_size(client: TestClient, seeded_engine: Sanad) -> None:
    before = client.get("/metrics").text
    assert sample(before, "sanad_refusals_total") == 0
    refused = client.post("/v1/chat", json={"question": Q_NOT_IN_SEEDS}).json()
    assert refused["answerable"] is False
    client.post("/v1/chat", json={"question": Q_WHO})
    text = client.get("/metrics").text

    assert sample(text, "sanad_refusals_total") == 1
    assert sample(text, "sanad_hedged_answers_total") == 0  # a refusal and a clear answer
    assert sample(text, "sanad_degraded_answers_total") == 0 and sample(text, "sanad_llm_failures_total") == 0
    assert sample(text, "sanad_answers_total", endpoint="chat", answerer="extractive", answerable="false") == 1
    assert sample(text, "sanad_answers_total", endpoint="chat", answerer="extractive", answerable="true") == 1
    for stage in ("retrieval", "answer"):
        assert sample(text, "sanad_stage_duration_seconds_count", stage=stage) == 2
    assert sample(text, "sanad_index_documents") == len(SEED_IDS)
    assert sample(text, "sanad_index_chunks") == seeded_engine.store.count_chunks() > len(SEED_IDS)
    assert sample(text, "sanad_store_up") == 1
    assert sample(text, "sanad_conversations") == 2
    assert (sample(text, "sanad_start_time_seconds") or 0) > 0


def test_documents_indexed_by_outcome(tmp_path: Path) -> None:
    article = {"id": "m-1", "title": "Metrics", "text": "Metrics\nThe service counts the articles it indexes."}
    with TestClient(create_app(Settings.in_memory(tmp_path))) as c:
        assert c.post("/v1/documents", json=article).status_code == 201
        assert c.post("/v1/documents", json=article).status_code == 200
        text = c.get("/metrics").text
    assert sample(text, "sanad_documents_indexed_total", outcome="added") == 1
    assert sample(text, "sanad_documents_indexed_total", outcome="unchanged") == 1
    assert sample(text, "sanad_documents_indexed_total", outcome="updated") == 0
    assert sample(text, "sanad_index_documents") == 1


def test_embedder_failures_are_counted_and_answers_go_on(client: TestClient, seeded_engine: Sanad,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    assert seeded_engine.embedder is not None
    counting = seeded_engine.embedder.inner
    assert isinstance(counting, FailureCountingEmbedder)

    def broken(text: str) -> list[float]:
        raise EmbeddingError("embeddings endpoint failed: connection refused")

    monkeypatch.setattr(counting.inner, "embed_query", broken)
    # A question never asked before: its vector is in no cache.
    r = client.post("/v1/chat", json={"question": f"{Q_WHO} ({uuid.uuid4().hex[:8]})"})
    assert r.status_code == 200 and r.json()["answerable"]  # lexical retrieval still finds the article
    text = client.get("/metrics").text
    assert (sample(text, "sanad_embedder_failures_total", reason="error") or 0) >= 1
    assert sample(text, "sanad_embedder_failures_total", reason="unavailable") == 0


def test_refused_before_routing_is_still_labelled(tmp_path: Path, seeded_engine: Sanad) -> None:
    with TestClient(create_app(Settings.in_memory(tmp_path, api_keys="k"), seeded_engine)) as c:
        assert c.post("/v1/chat", json={"question": Q_WHO}).status_code == 401
        text = c.get("/metrics", headers={"Authorization": "Bearer k"}).text
    assert sample(text, "sanad_http_requests_total", method="POST", route="/v1/chat", status="401") == 1


def test_each_app_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.observe_request("GET", "/healthz", 200, 0.01)
    assert sample(one.render().decode(), "sanad_http_requests_total", method="GET", route="/healthz",
                  status="200") == 1
    assert "sanad_http_requests_total{" not in two.render().decode()
    # Scrape-time gauges belong to the scrape that gave them.
    assert sample(one.render({"sanad_index_chunks": ("Chunks.", 7.0)}).decode(), "sanad_index_chunks") == 7
    assert "sanad_index_chunks" not in one.render().decode()


def test_an_answer_offered_as_the_closest_the_articles_come_is_counted() -> None:
    metrics = Metrics()
    hedged = Answer(answer="قد لا تجيب المقالات عن هذا السؤال مباشرة؛ أقرب ما ورد فيها: …", language="ar",
                    answerable=True, confident=False)
    metrics.observe_answer(hedged, 1.0, 1.0, endpoint="chat")
    metrics.observe_answer(hedged.model_copy(update={"confident": True}), 1.0, 1.0, endpoint="chat")
    text = metrics.render().decode()
    assert sample(text, "sanad_hedged_answers_total") == 1 and sample(text, "sanad_refusals_total") == 0
