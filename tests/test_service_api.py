"""The chat service through FastAPI's test client: what a user or an integrating program sees."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from index.ingest import Indexer
from rag.engine import Sanad
from rag.settings import LLMSettings, ServiceSettings, Settings
from rag.store import StoreUnavailable
from service.app import create_app
from tests.conftest import SEED_IDS
from tests.fakes.openai_server import FakeOpenAI, run_fake_openai
from tests.servers import free_port
from tests.sse import parse_sse
from tests.test_metrics import sample

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
CAIRO_MEETING = "003_046bdc7566d0cd7e"
ONLINE_MEETING = "004_62f51f2fac3a5964"
Q_WHO = "من شارك في الاجتماع الأمني الذي استضافته القاهرة؟"
Q_WHEN = "ومتى عقد؟"
Q_NOT_IN_SEEDS = "كم منتجا شارك في مهرجان التمور في واحة سيوة؟"
REFUSAL_AR = "لا تتضمن المقالات المتاحة إجابة عن هذا السؤال."

GRAIN = {
    "id": "alexandria-grain-terminal", "title": "Port of Alexandria opens new grain terminal", "date": "2025-12-03",
    "text": "Port of Alexandria opens new grain terminal\nThe Port of Alexandria opened a new grain terminal on "
            "Wednesday. The terminal can store 300,000 tonnes of wheat. It was built by a consortium led by the "
            "Egyptian company Nile Logistics. Transport minister Kamel al-Wazir inaugurated the terminal and said "
            "grain imports would be unloaded twice as fast.",
}
CONTAINERS = {
    "id": "port-said-containers", "title": "Port Said container terminal expansion completed", "date": "2025-12-07",
    "text": "Port Said container terminal expansion completed\nThe expansion of the East Port Said container terminal "
            "was completed on Sunday. Prime Minister Mostafa Madbouly inaugurated the expanded terminal, which can "
            "now handle 5 million containers a year. The work was carried out by a Chinese contractor.",
}
SIWA = {
    "id": "siwa-dates-festival", "title": "انطلاق مهرجان التمور في واحة سيوة", "date": "2025-10-14",
    "source": "test", "url": "https://example.com/siwa",
    "text": "انطلاق مهرجان التمور في واحة سيوة\nانطلقت اليوم فعاليات مهرجان التمور السنوي في واحة سيوة بمشاركة "
            "مئة وعشرين منتجا من مزارعي الواحة. ويستمر المهرجان خمسة أيام ويعرض أكثر من أربعين صنفا من التمور.",
}


# -- helpers ---------------------------------------------------------------------------------------


def open_seeded(settings: Settings) -> Sanad:
    engine = Sanad.open(settings)
    summary = Indexer(engine.store, engine.encoder, engine.embedder, settings.index).index_paths([SEEDS])
    assert summary.added == 5 and not summary.skipped
    return engine


def doc_ids(citations: list[dict[str, Any]]) -> set[str]:
    return {c["doc_id"] for c in citations}


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def stored(client: TestClient) -> tuple[int, int]:
    """What is stored, as a user can see it: conversations and documents."""
    return len(client.get("/v1/sessions").json()["sessions"]), client.get("/v1/documents").json()["total"]


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sanad]:
    """One seeded engine, shared by the read-only tests (each gets its own app and conversation store)."""
    engine = open_seeded(Settings.in_memory(tmp_path_factory.mktemp("seeded")))
    yield engine
    engine.close()


@pytest.fixture
def client(seeded: Sanad, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings.in_memory(tmp_path), seeded)) as c:
        yield c


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[TestClient]:
    """An app owning its own seeded engine: for tests that add or remove documents."""
    settings = Settings.in_memory(tmp_path)
    engine = open_seeded(settings)
    try:
        with TestClient(create_app(settings, engine)) as c:
            yield c
    finally:
        engine.close()


# -- conversations ---------------------------------------------------------------------------------


def test_arabic_follow_up_is_answered_from_the_first_turn(client: TestClient) -> None:
    first = client.post("/v1/chat", json={"question": Q_WHO})
    assert first.status_code == 200
    a1 = first.json()
    assert a1["answerable"] and a1["language"] == "ar" and a1["session_id"]
    assert a1["confident"] is True  # clear of the refusal line: given as the answer, not as the closest
    assert CAIRO_MEETING in doc_ids(a1["citations"])
    assert "مصر وقطر وتركيا" in a1["answer"]

    second = client.post("/v1/chat", json={"question": Q_WHEN, "session_id": a1["session_id"]}).json()
    assert second["session_id"] == a1["session_id"]
    assert second["rewritten_question"].startswith(Q_WHEN) and "القاهرة" in second["rewritten_question"]
    assert second["answerable"]
    top = next(c for c in second["citations"] if c["doc_id"] == CAIRO_MEETING)
    assert "25 نوفمبر" in top["title"]  # the cited article is the one dated 25 November
    assert "[1]" in second["answer"] and top["quote"] in second["answer"]

    # The same words without the conversation are about another meeting.
    alone = client.post("/v1/chat", json={"question": Q_WHEN}).json()
    assert alone["rewritten_question"] is None
    assert CAIRO_MEETING not in doc_ids(alone["citations"])

    session = client.get(f"/v1/sessions/{a1['session_id']}").json()
    assert [t["role"] for t in session["turns"]] == ["user", "assistant", "user", "assistant"]
    assert session["turns"][2]["content"] == Q_WHEN
    assert session["turns"][2]["rewritten_question"] == second["rewritten_question"]
    assert CAIRO_MEETING in doc_ids(session["turns"][3]["answer"]["citations"])


def test_the_document_list_comes_in_pages_that_add_up_to_the_index(client: TestClient) -> None:
    first = client.get("/v1/documents", params={"limit": 2}).json()
    assert first["total"] == len(SEED_IDS) and len(first["documents"]) == 2 and first["next_offset"] == 2
    seen, offset = [d["doc_id"] for d in first["documents"]], first["next_offset"]
    while offset is not None:
        page = client.get("/v1/documents", params={"limit": 2, "offset": offset}).json()
        seen += [d["doc_id"] for d in page["documents"]]
        offset = page["next_offset"]
    assert seen == sorted(SEED_IDS)  # each article once, in doc id order
    assert "minhash" not in first["documents"][0] and first["documents"][0]["chunks"] > 0
    past = client.get("/v1/documents", params={"offset": 99}).json()
    assert past["documents"] == [] and past["next_offset"] is None and past["total"] == len(SEED_IDS)
    assert client.get("/v1/documents", params={"limit": 0}).status_code == 422


def test_an_archive_sized_list_comes_100_at_a_time_by_default(settings: Settings, engine: Sanad,
                                                              tmp_path: Path) -> None:
    """More articles than a page: the default page holds 100 of them with the total, and `next_offset` leads
    through the rest; a page over 1000 is refused."""
    export = tmp_path / "day.jsonl"
    export.write_text("\n".join(json.dumps({"id": f"wire-{i:03d}", "title": f"خبر {i}", "text": f"نص الخبر رقم {i}."},
                                           ensure_ascii=False) for i in range(130)) + "\n", encoding="utf-8")
    indexer = Indexer(engine.store, engine.encoder, engine.embedder, settings.index, defer_dense=True)
    assert indexer.index_paths([export]).documents == 130
    with TestClient(create_app(settings, engine)) as c:
        first = c.get("/v1/documents").json()
        assert (len(first["documents"]), first["total"], first["offset"], first["next_offset"]) == (100, 130, 0, 100)
        rest = c.get("/v1/documents", params={"offset": first["next_offset"]}).json()
        assert (len(rest["documents"]), rest["total"], rest["next_offset"]) == (30, 130, None)
        ids = [d["doc_id"] for d in first["documents"] + rest["documents"]]
        assert ids == [f"wire-{i:03d}" for i in range(130)]
        assert c.get("/v1/documents", params={"limit": 1001}).status_code == 422
        # `sanad documents` beside a running server follows the pages to the end.
        from sanad.remote import SanadClient

        with SanadClient("http://testserver") as client:
            client._http.close()
            client._http = c
            assert [d["doc_id"] for d in client.documents(page=7)] == ids

def test_english_conversation(fresh: TestClient) -> None:
    for article in (GRAIN, CONTAINERS):
        assert fresh.post("/v1/documents", json=article).status_code == 201
    a1 = fresh.post("/v1/chat", json={"question": "Which company built the new grain terminal in Alexandria?"}).json()
    assert a1["language"] == "en" and a1["answerable"]
    assert "Nile Logistics" in a1["answer"]
    assert {c["doc_id"] for c in a1["citations"]} == {GRAIN["id"]}

    a2 = fresh.post("/v1/chat", json={"question": "Who inaugurated it?", "session_id": a1["session_id"]}).json()
    assert a2["language"] == "en" and a2["answerable"]
    assert "Kamel al-Wazir" in a2["answer"] and "Madbouly" not in a2["answer"]
    assert {c["doc_id"] for c in a2["citations"]} == {GRAIN["id"]}
    # Asked cold, "it" could be either terminal.
    cold = fresh.post("/v1/chat", json={"question": "Who inaugurated it?"}).json()
    assert "Madbouly" in cold["answer"]

    turns = fresh.get(f"/v1/sessions/{a1['session_id']}").json()["turns"]
    assert [t["content"] for t in turns[::2]] == ["Which company built the new grain terminal in Alexandria?",
                                                  "Who inaugurated it?"]


def test_streamed_answer_as_server_sent_events(client: TestClient) -> None:
    r = client.post("/v1/chat", json={"question": Q_WHO, "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    names = [name for name, _ in events]
    assert names[0] == "passages" and names[-2:] == ["answer", "done"]
    assert set(names[1:-2]) == {"delta"}
    passages, answer = events[0][1], events[-2][1]
    text = "".join(data["text"] for name, data in events if name == "delta")
    assert text == answer["answer"]
    assert passages == answer["citations"] and CAIRO_MEETING in doc_ids(passages)
    assert names.count("delta") >= len(answer["citations"])  # quote by quote
    assert answer["session_id"]
    # The streamed turn is stored: the conversation continues from it.
    follow = client.post("/v1/chat", json={"question": Q_WHEN, "session_id": answer["session_id"], "stream": True})
    final = dict(parse_sse(follow.text))["answer"]
    assert CAIRO_MEETING in doc_ids(final["citations"]) and final["rewritten_question"]
    assert len(client.get(f"/v1/sessions/{answer['session_id']}").json()["turns"]) == 4


def test_an_answer_of_several_quotes_streams_quote_by_quote(client: TestClient) -> None:
    r = client.post("/v1/chat", json={"question": "Who attended the security meeting in Cairo?", "stream": True})
    events = parse_sse(r.text)
    answer = events[-2][1]
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert len(answer["citations"]) >= 2
    # Each quote arrives as it is chosen, in its own delta, not the whole answer at the end.
    assert len(deltas) >= len(answer["citations"])
    assert all(d.count("«") <= 1 for d in deltas)
    assert "".join(deltas) == answer["answer"]


def test_sessions_list_get_delete(client: TestClient) -> None:
    sid = client.post("/v1/chat", json={"question": Q_WHO}).json()["session_id"]
    listed = client.get("/v1/sessions").json()["sessions"]
    assert [(s["id"], s["turns"], s["first_question"]) for s in listed] == [(sid, 2, Q_WHO)]
    assert client.delete(f"/v1/sessions/{sid}").status_code == 204
    assert_error(client.get(f"/v1/sessions/{sid}"), 404, "session_not_found")
    assert_error(client.delete(f"/v1/sessions/{sid}"), 404)
    assert_error(client.post("/v1/chat", json={"question": Q_WHEN, "session_id": sid}), 404)


def test_conversations_keep_only_the_newest_turns(tmp_path: Path, seeded: Sanad) -> None:
    settings = Settings.in_memory(tmp_path, service=ServiceSettings(max_turns=4))
    with TestClient(create_app(settings, seeded)) as c:
        sid = None
        for q in (Q_WHO, Q_WHEN, "ومن مثل تركيا فيه؟"):
            sid = c.post("/v1/chat", json={"question": q, "session_id": sid}).json()["session_id"]
        turns = c.get(f"/v1/sessions/{sid}").json()["turns"]
        assert [t["content"] for t in turns if t["role"] == "user"] == [Q_WHEN, "ومن مثل تركيا فيه؟"]
        assert len(turns) == 4


def test_concurrent_questions_and_ingestion(fresh: TestClient) -> None:
    """Answers (in worker threads) while articles are added and removed: no errors, no lost writes."""
    import threading

    statuses: list[int] = []
    failures: list[BaseException] = []

    def asker() -> None:
        try:
            for _ in range(4):
                statuses.append(fresh.post("/v1/chat", json={"question": Q_WHO}).status_code)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    def writer() -> None:
        try:
            for i in range(4):
                doc = {**SIWA, "id": f"siwa-{i}"}
                statuses.append(fresh.post("/v1/documents", json=doc).status_code)
            for i in range(0, 4, 2):
                statuses.append(fresh.delete(f"/v1/documents/siwa-{i}").status_code)
        except BaseException as exc:  # pragma: no cover
            failures.append(exc)

    threads = [threading.Thread(target=asker) for _ in range(4)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures
    assert sorted(set(statuses)) == [200, 201, 204] and len(statuses) == 22
    ids = {d["doc_id"] for d in fresh.get("/v1/documents").json()["documents"]}
    assert {"siwa-1", "siwa-3"} <= ids and not {"siwa-0", "siwa-2"} & ids
    assert len(fresh.get("/v1/sessions").json()["sessions"]) == 16


def test_filters_and_top_k(client: TestClient) -> None:
    a = client.post("/v1/chat", json={"question": Q_WHO, "filters": {"doc_ids": [ONLINE_MEETING]}}).json()
    assert {c["doc_id"] for c in a["citations"]} <= {ONLINE_MEETING}
    hits = client.post("/v1/search", json={"query": "اجتماع القاهرة الأمني", "top_k": 3}).json()["passages"]
    assert len(hits) == 3
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert CAIRO_MEETING in doc_ids(hits)
    dated = client.post("/v1/search", json={"query": "اجتماع", "filters": {"date_from": "2026-01-01"}}).json()
    assert {h["doc_id"] for h in dated["passages"]} == {ONLINE_MEETING}


# -- documents -------------------------------------------------------------------------------------


def test_ingest_answer_then_delete_and_refuse(fresh: TestClient) -> None:
    question = Q_NOT_IN_SEEDS
    before = fresh.post("/v1/chat", json={"question": question}).json()
    assert before["answerable"] is False and before["answer"] == REFUSAL_AR

    r = fresh.post("/v1/documents", json=SIWA)
    assert r.status_code == 201
    assert r.json()["documents"] == [{"doc_id": SIWA["id"], "outcome": "added", "chunks": 1}]
    listed = {d["doc_id"]: d for d in fresh.get("/v1/documents").json()["documents"]}
    assert listed[SIWA["id"]]["chunks"] == 1 and listed[SIWA["id"]]["title"] == SIWA["title"]
    assert listed[CAIRO_MEETING]["chunks"] > 1
    again = fresh.post("/v1/documents", json=SIWA)
    assert again.status_code == 200 and again.json()["documents"][0]["outcome"] == "unchanged"  # nothing created

    answer = fresh.post("/v1/chat", json={"question": question}).json()
    assert answer["answerable"] and "مئة وعشرين منتجا" in answer["answer"]
    assert answer["citations"][0]["doc_id"] == SIWA["id"]
    cited = answer["citations"][0]
    assert SIWA["text"][cited["start"]:cited["end"]] == cited["quote"]

    assert fresh.delete(f"/v1/documents/{SIWA['id']}").status_code == 204
    assert_error(fresh.delete(f"/v1/documents/{SIWA['id']}"), 404, "document_not_found")
    assert_error(fresh.get(f"/v1/documents/{SIWA['id']}"), 404)
    after = fresh.post("/v1/chat", json={"question": question}).json()
    assert after["answerable"] is False and after["answer"] == REFUSAL_AR


def test_file_uploads(fresh: TestClient, tmp_path: Path) -> None:
    text = "date 2025-10-14\n" + SIWA["text"]
    r = fresh.post("/v1/documents", files={"file": ("siwa festival.txt", text.encode(), "text/plain")})
    assert r.status_code == 201, r.text
    assert r.json()["documents"][0]["doc_id"] == "siwa_festival"
    record = fresh.get("/v1/documents/siwa_festival").json()
    assert record["title"] == SIWA["title"] and record["date"] == "2025-10-14"

    r = fresh.post("/v1/documents", files={"file": ("x.txt", text.encode())}, data={"id": "custom-id"})
    assert r.json()["documents"][0]["doc_id"] == "custom-id"

    lines = [json.dumps(GRAIN), "not json", json.dumps({"id": "no-text"}), json.dumps(CONTAINERS)]
    r = fresh.post("/v1/documents", files={"file": ("batch.jsonl", "\n".join(lines).encode())})
    assert r.status_code == 201
    body = r.json()
    assert [d["doc_id"] for d in body["documents"]] == [GRAIN["id"], CONTAINERS["id"]]
    assert [s["item"] for s in body["skipped"]] == ["batch.jsonl:2", "batch.jsonl:3"]

    html = f"<html><head><title>{SIWA['title']}</title></head><body><article><h1>{SIWA['title']}</h1>" \
           f"<p>{SIWA['text'].splitlines()[1]}</p></article></body></html>"
    r = fresh.post("/v1/documents", files={"file": ("siwa.html", html.encode(), "text/html")})
    assert r.status_code == 201 and r.json()["documents"][0]["doc_id"] == "siwa"


@pytest.mark.parametrize("name,content,status", [
    ("scan.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", 415),
    ("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), 415),
    ("empty.txt", b"   \n\n", 400),
    ("bad.jsonl", b'{"id": "x"}\nnot json\n', 400),
], ids=["pdf", "binary", "empty", "jsonl-without-articles"])
def test_upload_that_is_not_a_text_article_changes_nothing(fresh: TestClient, name: str, content: bytes,
                                                             status: int) -> None:
    before = stored(fresh)
    error = assert_error(fresh.post("/v1/documents", files={"file": (name, content)}), status)
    assert name.split(".")[0] in error["message"]
    assert stored(fresh) == before


@pytest.mark.parametrize("name,content,says", [
    ("report.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), "report.txt is not text (binary content)"),
    ("wire.jsonl", b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(32), "wire.jsonl is not text (binary content)"),
    ("report.md", b"\xc3(" + b"\x01\x02\x03\x04\x05\x06\x07\x08" * 20, "report.md is not text in a known encoding"),
], ids=["png-named-txt", "zip-named-jsonl", "undecodable-md"])
def test_a_file_with_a_text_name_but_binary_content_is_told_it_is_not_text(fresh: TestClient, name: str,
                                                                            content: bytes, says: str) -> None:
    """The name already has a supported type: the refusal says what is wrong with the content, and does not
    ask for a type the file already has."""
    error = assert_error(fresh.post("/v1/documents", files={"file": (name, content)}), 415, "unsupported_media_type")
    assert error["message"].startswith(says), error["message"]
    assert "Send one of" not in error["message"] and "UTF-8" in error["message"]

def test_bad_document_requests(fresh: TestClient) -> None:
    before = stored(fresh)
    assert_error(fresh.post("/v1/documents", json={"id": "x", "title": "no text"}), 422, "validation_error")
    assert_error(fresh.post("/v1/documents", json={**SIWA, "id": "a/b"}), 422)
    assert_error(fresh.post("/v1/documents", json={**SIWA, "date": "yesterday"}), 422)
    assert_error(fresh.post("/v1/documents", json=[SIWA]), 422)
    assert_error(fresh.post("/v1/documents", content=b"{", headers={"content-type": "application/json"}), 400,
                 "invalid_json")
    assert_error(fresh.post("/v1/documents", content=b"hello", headers={"content-type": "text/plain"}), 415)
    assert_error(fresh.post("/v1/documents", files={"other": ("a.txt", b"text")}), 400, "missing_file")
    assert stored(fresh) == before


# -- bad input -------------------------------------------------------------------------------------


BAD_CHAT = [
    ({"question": ""}, 422, "empty_question"),
    ({"question": "   \n\t "}, 422, "empty_question"),
    ({"question": "س" * 2001}, 422, "question_too_long"),
    ({"question": 42}, 422, "validation_error"),
    ({"question": ["a"]}, 422, "validation_error"),
    ({"question": Q_WHO, "top_k": "five"}, 422, "validation_error"),
    ({"question": Q_WHO, "top_k": 0}, 422, "validation_error"),
    ({"question": Q_WHO, "top_k": 51}, 422, "validation_error"),
    ({"question": Q_WHO, "stream": "yes"}, 422, "validation_error"),
    ({"question": Q_WHO, "filters": {"date_from": "last week"}}, 422, "validation_error"),
    ({"question": Q_WHO, "filters": {"doc_ids": "003"}}, 422, "validation_error"),
    ({"question": Q_WHO, "sesion_id": "typo"}, 422, "validation_error"),
    ({"question": Q_WHO, "session_id": "no-such-session"}, 404, "session_not_found"),
    ({"question": Q_WHO, "session_id": "no-such-session", "stream": True}, 404, "session_not_found"),
    ({}, 422, "validation_error"),
]


@pytest.mark.parametrize("body,status,code", BAD_CHAT)
def test_bad_chat_requests_get_a_json_error_and_store_nothing(client: TestClient, body: dict[str, Any],
                                                              status: int, code: str) -> None:
    before = stored(client)
    error = assert_error(client.post("/v1/chat", json=body), status, code)
    if code == "validation_error" and body:
        assert any(field in error["message"] for field in ("question", "top_k", "stream", "filters", "sesion_id"))
    assert stored(client) == before


def test_invalid_json_and_missing_body(client: TestClient) -> None:
    before = stored(client)
    for raw in (b'{"question": ', b"question=hi", b'{"question": "a",}'):
        error = assert_error(client.post("/v1/chat", content=raw, headers={"content-type": "application/json"}),
                             400, "invalid_json")
        assert "JSON" in error["message"]
    assert_error(client.post("/v1/chat"), 422, "validation_error")
    assert_error(client.post("/v1/chat", json=["question"]), 422, "validation_error")
    assert_error(client.get("/v1/chat"), 405, "method_not_allowed")
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")
    assert stored(client) == before


def test_body_over_the_limit_is_413(tmp_path: Path, seeded: Sanad) -> None:
    settings = Settings.in_memory(tmp_path, service=ServiceSettings(max_body_bytes=1024, max_question_chars=5000))
    with TestClient(create_app(settings, seeded)) as c:
        before = stored(c)
        big = {"question": "س" * 1500}
        assert_error(c.post("/v1/chat", json=big), 413, "body_too_large")

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
            yield b'{"question": "'
            for _ in range(20):
                yield "س".encode() * 100
            yield b'"}'

        assert_error(c.post("/v1/chat", content=chunks(), headers={"content-type": "application/json"}), 413)
        upload = ("big.txt", ("عنوان\n" + "نص " * 1000).encode())
        assert_error(c.post("/v1/documents", files={"file": upload}), 413)
        assert stored(c) == before
        assert c.post("/v1/chat", json={"question": Q_WHO}).status_code == 200


# -- OpenAI-compatible ------------------------------------------------------------------------------------------------


def test_openai_compatible_completion_uses_the_messages_as_history(client: TestClient) -> None:
    first = client.post("/v1/chat/completions", json={"model": "sanad", "messages": [
        {"role": "system", "content": "You are helpful."}, {"role": "user", "content": Q_WHO}]}).json()
    assert first["object"] == "chat.completion"
    text = first["choices"][0]["message"]["content"]
    assert first["choices"][0]["finish_reason"] == "stop" and "[1]" in text
    assert CAIRO_MEETING in doc_ids(first["citations"]) and first["citations"][0]["n"] == 1
    assert first["usage"]["total_tokens"] > 0

    follow = client.post("/v1/chat/completions", json={"model": "sanad", "messages": [
        {"role": "user", "content": Q_WHO}, {"role": "assistant", "content": text},
        {"role": "user", "content": [{"type": "text", "text": Q_WHEN}]}]}).json()
    assert CAIRO_MEETING in doc_ids(follow["citations"])
    assert follow["sanad"]["rewritten_question"].startswith(Q_WHEN)
    assert client.get("/v1/sessions").json()["sessions"] == []  # the client holds the conversation

    models = client.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["sanad"]


def test_openai_compatible_stream(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json={"model": "sanad", "stream": True,
                                                  "stream_options": {"include_usage": True},
                                                  "messages": [{"role": "user", "content": Q_WHO}]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    assert events[-1] == ("message", "[DONE]")
    chunks = [data for _, data in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert CAIRO_MEETING in doc_ids(chunks[0]["citations"])
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    last = [c for c in chunks if c["choices"]][-1]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert text.startswith("استضافت القاهرة") and "[1]" in text
    assert [c["n"] for c in last["citations"]] == list(range(1, len(last["citations"]) + 1))
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_openai_content_ends_with_sources_any_client_shows(client: TestClient) -> None:
    body = {"model": "sanad", "messages": [{"role": "user", "content": Q_WHO}]}
    reply = client.post("/v1/chat/completions", json=body).json()
    content = reply["choices"][0]["message"]["content"]
    answer, block = content.split("\n\nالمصادر:\n")  # an Arabic answer: an Arabic heading
    assert answer == reply["sanad"]["answer"]
    lines = block.split("\n")
    assert len(lines) == len(reply["citations"])
    for line, c in zip(lines, reply["citations"], strict=True):
        assert line.startswith(f"[{c['n']}] ") and "«" in line
        assert c["quote"][:30] in line  # the quoted sentence, shortened
    assert reply["citations"]  # the structured field stays

    streamed = client.post("/v1/chat/completions", json={**body, "stream": True})
    chunks = [data for _, data in parse_sse(streamed.text)[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == content

    english = client.post("/v1/chat/completions", json={"model": "sanad", "messages": [
        {"role": "user", "content": "Who took part in the security meeting in Cairo?"}]}).json()
    assert "\n\nSources:\n[1] " in english["choices"][0]["message"]["content"]

    plain = client.post("/v1/chat/completions", json={**body, "sources": False}).json()
    assert plain["choices"][0]["message"]["content"] == plain["sanad"]["answer"] and plain["citations"]

    refused = client.post("/v1/chat/completions", json={"model": "sanad", "messages": [
        {"role": "user", "content": Q_NOT_IN_SEEDS}]}).json()
    assert refused["choices"][0]["message"]["content"] == refused["sanad"]["answer"]  # nothing to list

    # A client sends the whole content back as history: the follow-up is understood as before.
    follow = client.post("/v1/chat/completions", json={"model": "sanad", "messages": [
        {"role": "user", "content": Q_WHO}, {"role": "assistant", "content": content},
        {"role": "user", "content": Q_WHEN}]}).json()
    assert CAIRO_MEETING in doc_ids(follow["citations"])
    assert "المصادر" not in (follow["sanad"]["rewritten_question"] or "")


def test_sources_block_can_be_turned_off_for_the_service(tmp_path: Path, seeded: Sanad) -> None:
    settings = Settings.in_memory(tmp_path, service={"sources_in_content": False})
    with TestClient(create_app(settings, seeded)) as c:
        reply = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": Q_WHO}]}).json()
        assert reply["choices"][0]["message"]["content"] == reply["sanad"]["answer"] and reply["citations"]
        on = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": Q_WHO}],
                                                  "sources": True}).json()
        assert "\n\nالمصادر:\n[1] " in on["choices"][0]["message"]["content"]


def test_openai_compatible_bad_requests(client: TestClient) -> None:
    url = "/v1/chat/completions"
    assert_error(client.post(url, json={"model": "sanad", "messages": []}), 422)
    assert_error(client.post(url, json={"messages": [{"role": "assistant", "content": "hi"}]}), 422)
    assert_error(client.post(url, json={"messages": [{"role": "user", "content": "  "}]}), 422, "empty_question")
    assert_error(client.post(url, json={"messages": "hello"}), 422)
    assert_error(client.post(url, content=b"{", headers={"content-type": "application/json"}), 400)


# -- access ----------------------------------------------------------------------------------------


def test_api_keys(tmp_path: Path, seeded: Sanad) -> None:
    with TestClient(create_app(Settings.in_memory(tmp_path, api_keys="key-one, key-two"), seeded)) as c:
        for method, path in (("post", "/v1/chat"), ("get", "/v1/documents"), ("post", "/v1/chat/completions"),
                             ("get", "/v1/sessions/x"), ("get", "/metrics"), ("post", "/v1/search")):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "key-one"},
                            {"Authorization": "Basic a2V5LW9uZQ=="}):
                r = getattr(c, method)(path, headers=headers, **({"json": {"question": Q_WHO}} if method == "post"
                                                                 else {}))
                assert_error(r, 401, "unauthorized")
                assert r.headers["www-authenticate"].startswith("Bearer")
        # Refused before the body is looked at.
        assert_error(c.post("/v1/chat", content=b"{", headers={"content-type": "application/json"}), 401)
        for path in ("/healthz", "/readyz", "/", "/docs", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        for key in ("key-one", "key-two"):
            r = c.post("/v1/chat", json={"question": Q_WHO}, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200 and r.json()["answerable"]
        assert c.get("/metrics", headers={"Authorization": "Bearer key-two"}).status_code == 200
        assert "bearer" in json.dumps(c.get("/openapi.json").json()["components"]["securitySchemes"]).lower()


def test_without_keys_the_default_does_not_throttle_a_whole_office_behind_one_proxy(tmp_path: Path,
                                                                                    seeded: Sanad) -> None:
    settings = Settings.in_memory(tmp_path, service=ServiceSettings(rate_limit_per_minute=3))
    with TestClient(create_app(settings, seeded)) as c:
        assert all(c.get("/v1/documents").status_code == 200 for _ in range(10))


def test_rate_limit_per_api_key(tmp_path: Path, seeded: Sanad) -> None:
    settings = Settings.in_memory(tmp_path, service=ServiceSettings(rate_limit_per_minute=2), api_keys="a,b")
    with TestClient(create_app(settings, seeded)) as c:
        for key in ("a", "a"):
            assert c.get("/v1/documents", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        r = c.get("/v1/documents", headers={"Authorization": "Bearer a"})
        assert_error(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
        assert c.get("/v1/documents", headers={"Authorization": "Bearer b"}).status_code == 200  # its own bucket


def test_per_ip_limit_believes_x_forwarded_for_only_from_trusted_proxies(tmp_path: Path, seeded: Sanad) -> None:
    # TestClient's peer is "testclient"; trust it as the proxy, as a deployment would trust its reverse proxy.
    service = ServiceSettings(rate_limit_per_minute=2, rate_limit_by_ip=True, trusted_proxies="10.0.0.0/8")
    settings = Settings.in_memory(tmp_path, service=service)
    app = create_app(settings, seeded)
    with TestClient(app, client=("10.0.0.5", 1234)) as proxy, TestClient(app, client=("192.0.2.9", 1)) as direct:
        def via(ip: str) -> int:
            return proxy.get("/v1/documents", headers={"X-Forwarded-For": f"6.6.6.6, {ip}"}).status_code

        assert [via("198.51.100.1"), via("198.51.100.1"), via("198.51.100.1")] == [200, 200, 429]
        assert via("198.51.100.2") == 200  # another user behind the same proxy has their own bucket
        # From an untrusted peer the header is ignored: spoofing a new address each time does not help.
        spoofed = [direct.get("/v1/documents", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                   for i in range(3)]
        assert spoofed == [200, 200, 429]


def test_rate_limit(tmp_path: Path, seeded: Sanad) -> None:
    settings = Settings.in_memory(tmp_path, service=ServiceSettings(rate_limit_per_minute=3, rate_limit_by_ip=True))
    with TestClient(create_app(settings, seeded)) as c:
        for _ in range(3):
            assert c.get("/v1/documents").status_code == 200
        r = c.post("/v1/chat", json={"question": Q_WHO})
        assert_error(r, 429, "rate_limited")
        assert 1 <= int(r.headers["retry-after"]) <= 20
        assert c.get("/healthz").status_code == 200  # probes are not limited
        assert c.get("/v1/sessions").json()["error"]["code"] == "rate_limited"
        metrics = c.get("/metrics").text
        assert sample(metrics, "sanad_http_requests_total", method="POST", route="/v1/chat", status="429") == 1


# -- health, metrics, docs -------------------------------------------------------------------------


def test_readiness_metrics_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["store"]["ok"] and ready["store"]["chunks"] > 0
    assert ready["llm"]["configured"] is False
    # The shipped reader, loaded and named (answers say which reader judged them too).
    assert ready["reader"] == {"configured": True, "ok": True, "name": "reader-cross-1"}
    assert ready["store"]["dense"]["encoder"] == "onnxruntime"  # the bundled encoder, on the project's own graph

    client.post("/v1/chat", json={"question": Q_WHO})
    refused = client.post("/v1/chat", json={"question": Q_NOT_IN_SEEDS}).json()
    assert refused["answerable"] is False
    client.post("/v1/chat", json={"question": ""})
    text = client.get("/metrics").text
    assert sample(text, "sanad_http_requests_total", method="POST", route="/v1/chat", status="200") == 2
    assert sample(text, "sanad_http_requests_total", method="POST", route="/v1/chat", status="422") == 1
    assert sample(text, "sanad_refusals_total") == 1 and sample(text, "sanad_degraded_answers_total") == 0
    assert sample(text, "sanad_stage_duration_seconds_count", stage="retrieval") == 2
    assert sample(text, "sanad_http_request_duration_seconds_bucket", method="POST", route="/v1/chat",
                  le="+Inf") == 3
    assert (sample(text, "sanad_index_chunks") or 0) > 0 and sample(text, "sanad_index_documents") == 5

    spec = client.get("/openapi.json").json()
    assert {"/v1/chat", "/v1/chat/completions", "/v1/sessions/{session_id}", "/v1/documents",
            "/v1/documents/{doc_id}", "/v1/search", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    examples = json.dumps(spec["paths"]["/v1/chat"]["post"], ensure_ascii=False)
    assert Q_WHO in examples and "Who took part" in examples
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_store_unreachable_is_503_with_the_reason(client: TestClient, seeded: Sanad,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("Qdrant is not reachable: connection refused")

    monkeypatch.setattr(seeded.store, "ping", down)
    monkeypatch.setattr(seeded.store, "search", down)
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "connection refused" in ready.json()["store"]["reason"]
    error = assert_error(client.post("/v1/chat", json={"question": Q_WHO}), 503, "store_unavailable")
    assert "connection refused" in error["message"]
    events = parse_sse(client.post("/v1/chat", json={"question": Q_WHO, "stream": True}).text)
    assert events[-1][0] == "error" and "connection refused" in events[-1][1]["error"]["message"]
    assert client.get("/v1/sessions").json()["sessions"] == []


# -- a configured LLM that fails -------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[tuple[FakeOpenAI, str]]:
    with run_fake_openai() as running:
        yield running


@pytest.fixture
def llm_client(fake_llm: tuple[FakeOpenAI, str], tmp_path: Path) -> Iterator[tuple[TestClient, FakeOpenAI]]:
    fake, base_url = fake_llm
    fake.reset()
    fake.hang_seconds = 5
    settings = Settings.in_memory(tmp_path, llm=LLMSettings(base_url=base_url, api_key=SecretStr("x"),
                                                            model="fake-model", timeout=1))
    engine = open_seeded(settings)
    try:
        with TestClient(create_app(settings, engine)) as c:
            yield c, fake
    finally:
        engine.close()
        fake.reset()


def test_llm_answers_are_streamed_token_by_token(llm_client: tuple[TestClient, FakeOpenAI]) -> None:
    c, fake = llm_client
    fake.reply = lambda messages: "استضافت القاهرة اجتماعًا أمنيًا رفيع المستوى [1] حضره رؤساء أجهزة المخابرات [1]."
    a = c.post("/v1/chat", json={"question": Q_WHO}).json()
    assert a["answerer"] == "llm" and not a["degraded"] and a["citations"][0]["n"] == 1
    events = parse_sse(c.post("/v1/chat", json={"question": Q_WHO, "stream": True}).text)
    deltas = [d["text"] for name, d in events if name == "delta"]
    final = dict(events)["answer"]
    assert len(deltas) > 3 and "".join(deltas) == final["answer"]
    assert final["answerer"] == "llm" and not final["degraded"]
    assert c.get("/readyz").json()["status"] == "ready"


@pytest.mark.parametrize("mode", ["error500", "hang", "malformed"])
def test_llm_failure_degrades_to_the_offline_answer(llm_client: tuple[TestClient, FakeOpenAI], mode: str) -> None:
    c, fake = llm_client
    fake.mode = mode  # type: ignore[assignment]
    r = c.post("/v1/chat", json={"question": Q_WHO})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["degraded"] is True and a["answerer"] == "extractive" and a["answerable"]
    assert CAIRO_MEETING in doc_ids(a["citations"])
    completion = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": Q_WHO}]})
    assert completion.status_code == 200 and completion.json()["sanad"]["degraded"] is True
    text = c.get("/metrics").text
    assert sample(text, "sanad_degraded_answers_total") == 2 and sample(text, "sanad_llm_failures_total") == 2


def test_llm_stream_dropped_midway_resets_to_the_offline_answer(llm_client: tuple[TestClient, FakeOpenAI]) -> None:
    c, fake = llm_client
    fake.reply = lambda messages: "استضافت القاهرة اجتماعًا أمنيًا رفيع المستوى [1] حضره رؤساء أجهزة المخابرات [1]."
    fake.mode = "drop"
    r = c.post("/v1/chat", json={"question": Q_WHO, "stream": True})
    assert r.status_code == 200
    events = parse_sse(r.text)
    names = [n for n, _ in events]
    assert names[0] == "passages" and "reset" in names and names[-2:] == ["answer", "done"]
    cut = names.index("reset")
    assert "delta" in names[:cut]  # some LLM text was shown, then taken back
    final = events[-2][1]
    assert final["degraded"] is True and final["answerable"]
    assert "".join(d["text"] for n, d in events[cut:] if n == "delta") == final["answer"]

    chunks = parse_sse(c.post("/v1/chat/completions", json={
        "stream": True, "messages": [{"role": "user", "content": Q_WHO}]}).text)
    assert chunks[-1] == ("message", "[DONE]")
    assert chunks[-2][1]["sanad"]["degraded"] is True
    fake.mode = "error500"
    assert c.get("/readyz").status_code == 200


def test_llm_unreachable_is_reported_and_answers_degrade(tmp_path: Path, seeded: Sanad) -> None:
    port = free_port()  # nothing listens there
    settings = Settings.in_memory(tmp_path, llm=LLMSettings(base_url=f"http://127.0.0.1:{port}/v1",
                                                            api_key=SecretStr("x"), timeout=2))
    engine = open_seeded(settings)
    try:
        with TestClient(create_app(settings, engine)) as c:
            ready = c.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "degraded" and ready.json()["llm"]["ok"] is False
            a = c.post("/v1/chat", json={"question": Q_WHO})
            assert a.status_code == 200 and a.json()["degraded"] is True and a.json()["answerable"]
    finally:
        engine.close()


def test_a_slow_llm_does_not_block_other_requests(llm_client: tuple[TestClient, FakeOpenAI],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from rag.llm import LLMError

    c, _ = llm_client
    engine = c.app.state.sanad.engine  # type: ignore[attr-defined]
    entered, release = threading.Event(), threading.Event()

    def slow_chat(messages: Any) -> str:
        entered.set()
        release.wait(30)
        raise LLMError("timed out")

    monkeypatch.setattr(engine.llm, "chat", slow_chat)
    result: dict[str, Any] = {}
    slow = threading.Thread(target=lambda: result.update(r=c.post("/v1/chat", json={"question": Q_WHO})))
    slow.start()
    try:
        assert entered.wait(10)
        assert c.get("/healthz").status_code == 200
        assert c.post("/v1/search", json={"query": "اجتماع القاهرة"}).status_code == 200
        assert c.get("/v1/documents").json()["total"] == 5
        assert slow.is_alive()  # all of the above while the LLM call was still pending
    finally:
        release.set()
        slow.join(timeout=30)
    assert result["r"].status_code == 200 and result["r"].json()["degraded"] is True
