"""Faults, as a user meets them: an indexing run killed mid-way, writes while many people chat, an LLM
endpoint that hangs or breaks, a Qdrant server that is down at start-up, and clients that send too much,
too slowly, or for too long. Nothing is lost or duplicated, every answer is whole, and every limit answers
with a reason.

Already covered elsewhere (not repeated): LLM failures on the non-streamed routes and the dropped stream
on the streamed ones (test_service_api.py), every LLM failure at the engine (test_llm_path.py), a Qdrant
server going away and back at the engine (test_qdrant_server_path.py), the body limit through the test
client (test_service_api.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from index.chunker import Chunker
from index.ingest import Indexer
from rag.engine import Sanad
from rag.models import Turn
from rag.settings import EmbedSettings, LLMSettings, QdrantSettings, ServiceSettings, Settings
from service.app import create_app
from service.conversations import DB_NAME
from service.server import uvicorn_config
from tests.conftest import SEED_IDS, VECTOR_CACHE, index_seeds, read_seed
from tests.fakes.openai_server import FakeOpenAI, run_fake_openai
from tests.fakes.qdrant_server import FakeQdrant
from tests.servers import free_port, serve
from tests.sse import parse_sse

CAIRO_MEETING = "003_046bdc7566d0cd7e"
Q_WHO = "من شارك في الاجتماع الأمني الذي استضافته القاهرة؟"
SEED_QUESTIONS = [
    Q_WHO,
    "كم مرة انتهك الجيش الإسرائيلي وقف إطلاق النار بحسب غازي حمد؟",
    "من يرأس وفد حماس في مفاوضات القاهرة؟",
    "كم عضوا في مجلس الأمن صوتوا لصالح القرار؟",
    "ما الدول التي امتنعت عن التصويت على قرار مجلس الأمن؟",
    "من فاز بكأس العالم لكرة القدم 2022؟",  # not in the articles: a refusal is a complete answer too
]
_MARKER = re.compile(r"\[(\d+)\]")
START_TIMEOUT = 60.0


# -- helpers -----------------------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANAD_")}
    env["SANAD_EMBED__CACHE_PATH"] = str(VECTOR_CACHE)  # the run's shared vector cache (tests/conftest.py)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def sanad(*args: str) -> list[str]:
    return [sys.executable, "-m", "sanad.cli", *args]


def _seed_paragraphs() -> list[tuple[str, list[str]]]:
    out = []
    for doc_id in SEED_IDS:
        lines = [ln.strip() for ln in read_seed(doc_id).splitlines() if ln.strip() and not ln.startswith("date ")]
        out.append((lines[0], lines[1:]))
    return out


_CITIES = ["القاهرة", "غزة", "الدوحة", "أنقرة", "عمّان", "بيروت", "الرياض", "تونس"]


def varied_articles(n: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    """``n`` distinct articles made from the seeds: shuffled paragraphs, a lead line of their own."""
    rng = random.Random(seed)
    bases = _seed_paragraphs()
    articles = []
    for i in range(n):
        title, paras = bases[i % len(bases)]
        picked = rng.sample(paras, k=rng.randint(2, min(8, len(paras))))
        lead = f"{title} — تقرير رقم {i} من {rng.choice(_CITIES)}، بتوقيت {rng.randint(0, 23)}:{rng.randint(10, 59)}."
        articles.append({"id": f"{prefix}-{i:04d}", "title": f"{title} ({i})", "text": "\n\n".join([lead, *picked]),
                         "date": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}"})
    return articles


def assert_answer_is_whole(answer: dict[str, Any]) -> None:
    """Text, and citations that match its [n] markers one to one."""
    assert answer["answer"].strip()
    markers = {int(n) for n in _MARKER.findall(answer["answer"])}
    assert markers == {c["n"] for c in answer["citations"]}
    assert answer["answerable"] == bool(answer["citations"])
    for c in answer["citations"]:
        assert c["quote"] and c["quote"] in c["text"]


@contextlib.contextmanager
def serving(app: FastAPI, settings: Settings) -> Iterator[str]:
    """``app`` on a real socket, with the uvicorn configuration ``sanad serve`` uses; yields its URL."""
    config = uvicorn_config(app, settings, "127.0.0.1", 0, log_level="warning")
    with serve(config=config, timeout=START_TIMEOUT, name="sanad") as url:
        yield url


# -- 1. indexing killed mid-way ------------------------------------------------------------------------------------


@dataclass
class StoreState:
    chunks: dict[str, tuple[str, int]]  # point id -> (doc_id, chunk_index)
    records: dict[str, dict[str, Any]]  # doc_id -> document record, without the indexing times


def read_store(data_dir: Path, engine_kind: str, embed: EmbedSettings | None = None) -> StoreState:
    """What a stopped or killed run left (built lexically, unless ``embed`` says how it was built)."""
    engine = Sanad.open(Settings(data_dir=data_dir, qdrant=QdrantSettings(engine=engine_kind),  # type: ignore[arg-type]
                                 embed=embed or EmbedSettings(backend="none")))
    try:
        chunks: dict[str, tuple[str, int]] = {}
        offset = None
        while True:
            points, offset = engine.store.client.scroll(engine.store.chunks, limit=512, offset=offset)
            for p in points:
                assert str(p.id) not in chunks
                chunks[str(p.id)] = (p.payload["doc_id"], p.payload["chunk_index"])
            if offset is None:
                break
        records = {}
        for r in engine.store.list_documents():
            assert r["doc_id"] not in records
            records[r["doc_id"]] = {k: v for k, v in r.items() if k not in ("indexed_at", "indexed_ts")}
        return StoreState(chunks, records)
    finally:
        engine.close()


def assert_consistent(state: StoreState, in_flight: int = 0) -> None:
    """Each record's chunks all there, no chunk twice; at most ``in_flight`` documents with chunks but no record
    (the article being written when the process died: its chunks go in before its record)."""
    per_doc = Counter(doc for doc, _ in state.chunks.values())
    assert len(set(state.chunks.values())) == len(state.chunks), "a chunk is stored twice"
    for doc_id, record in state.records.items():
        assert per_doc[doc_id] == record["chunks"], doc_id
    orphans = set(per_doc) - set(state.records)
    assert len(orphans) <= in_flight, orphans


def _lock_file(data_dir: Path, engine_kind: str) -> Path:
    return data_dir / "qdrant" / ("edge/.edge.lock" if engine_kind == "edge" else ".lock")


def holds_store(pid: int, data_dir: Path, engine_kind: str) -> bool:
    """Whether process ``pid`` has opened the store (holds its lock), read from /proc/locks without touching it."""
    try:
        inode = os.stat(_lock_file(data_dir, engine_kind)).st_ino
        locks = Path("/proc/locks").read_text()
    except OSError:
        return False
    for line in locks.splitlines():  # "1: FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF"
        parts = line.replace("->", "").split()
        if len(parts) > 5 and parts[4] == str(pid) and parts[5].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


def cpu_seconds(pid: int) -> float:
    """CPU time used by process ``pid`` so far: a measure of its progress that does not depend on machine load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def kill_mid_way(cmd: list[str], env: dict[str, str], data_dir: Path, engine_kind: str, n: int,
                 cwd: Path) -> StoreState:
    """Run ``cmd`` and SIGKILL it once it has used a random amount of CPU time after opening the store, until
    the store holds some but not all documents; returns that partial state (checked consistent)."""
    # Measured (lexical only): about 0.55 s of CPU to get ready after opening, then 4 ms (edge) or 5 ms (local) per
    # article.
    rng = random.Random(n)  # seeded: the same first fuse on every run
    fuse = rng.uniform(0.7, 1.4) if engine_kind == "edge" else rng.uniform(0.65, 0.95)
    for _ in range(8):
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not holds_store(proc.pid, data_dir, engine_kind) and proc.poll() is None:
            assert time.monotonic() < deadline, "the indexer never opened the store"
            time.sleep(0.005)
        with contextlib.suppress(OSError):
            burn = cpu_seconds(proc.pid) + fuse
            while proc.poll() is None and cpu_seconds(proc.pid) < burn:
                assert time.monotonic() < deadline + START_TIMEOUT
                time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        out = proc.communicate()[0].decode()
        if proc.returncode == 0:  # it finished first: again, from nothing, with a shorter fuse
            shutil.rmtree(data_dir)
            fuse *= 0.6
            continue
        assert proc.returncode == -signal.SIGKILL, out
        state = read_store(data_dir, engine_kind)  # the store opens after the kill ...
        assert_consistent(state, in_flight=1)  # ... with every finished article whole
        if 0 < len(state.records) < n:
            return state
        if state.records:  # everything was in: again, from nothing, with a shorter fuse
            shutil.rmtree(data_dir)
            fuse *= 0.6
        else:  # killed before the first article was in: again on top of it, with a longer fuse
            fuse += 0.3
    pytest.fail("could not stop the indexer mid-way")


@pytest.mark.parametrize(("engine_kind", "n"), [("edge", 600), ("local", 150)])
def test_indexing_killed_mid_way_then_rerun_ends_as_one_clean_run(tmp_path: Path, engine_kind: str, n: int) -> None:
    corpus = tmp_path / "big.jsonl"
    articles = varied_articles(n, seed=n, prefix="art")
    corpus.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in articles), encoding="utf-8")
    # The lexical pass is what this kill lands in: the dense pass that follows it has its own test
    # (tests/test_dense_fill.py), so here the index is lexical only.
    env = clean_env(SANAD_QDRANT__ENGINE=engine_kind, SANAD_EMBED__BACKEND="none")
    killed = tmp_path / "killed"
    cmd = sanad("index", str(corpus), "--data-dir", str(killed))

    partial = kill_mid_way(cmd, env, killed, engine_kind, n, tmp_path)

    rerun = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    summary = re.search(r"(\d+) documents \((\d+) added, (\d+) updated, (\d+) unchanged\)", rerun.stdout)
    assert summary, rerun.stdout
    assert [int(g) for g in summary.groups()] == [n, n - len(partial.records), 0, len(partial.records)]

    clean = tmp_path / "clean"
    settings = Settings(data_dir=clean, qdrant=QdrantSettings(engine=engine_kind),  # type: ignore[arg-type]
                        embed=EmbedSettings(backend="none"))
    engine = Sanad.open(settings)
    try:
        assert Indexer(engine.store, engine.encoder, engine.embedder, settings.index).index_paths([corpus]).added == n
    finally:
        engine.close()

    after, once = read_store(killed, engine_kind), read_store(clean, engine_kind)
    assert_consistent(after)
    assert_consistent(once)
    assert len(once.records) == n
    assert set(after.chunks) == set(once.chunks)
    assert after.records == once.records
    # What was in before the kill was kept as it was (same chunk ids, same records).
    kept = {pid for pid, (doc, _) in partial.chunks.items() if doc in partial.records}
    assert kept <= set(after.chunks)
    assert all(after.records[d] == r for d, r in partial.records.items())


# -- 2. ingestion over the API while 16 clients chat ---------------------------------------------------------------


def test_documents_added_while_16_clients_chat(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", service=ServiceSettings(rate_limit_per_minute=0))
    engine = Sanad.open(settings)
    index_seeds(engine, settings)
    engine.close()
    new = varied_articles(20, seed=16, prefix="live")
    chunker = Chunker(settings.index.chunk_tokens, settings.index.chunk_overlap)
    expected = {a["id"]: len(chunker.chunk(a["text"])) for a in new}
    assert sum(expected.values()) > len(new)  # some articles have several chunks

    failures: list[str] = []
    answers: list[dict[str, Any]] = []
    writes: list[tuple[str, int, str]] = []
    writers_done = threading.Event()

    with serving(create_app(settings), settings) as url:

        def chat_client(k: int) -> None:
            stream = k % 2 == 1
            with httpx.Client(base_url=url, timeout=60) as http:
                i = 0
                while i < 3 or not writers_done.is_set():
                    question = SEED_QUESTIONS[(k + i) % len(SEED_QUESTIONS)]
                    i += 1
                    try:
                        r = http.post("/v1/chat", json={"question": question, "stream": stream})
                        if r.status_code != 200:
                            failures.append(f"{r.status_code} {r.text[:200]}")
                            continue
                        if stream:
                            events = parse_sse(r.text)
                            assert [name for name, _ in events][-2:] == ["answer", "done"], events[-2:]
                            answer = dict(events)["answer"]
                            assert "".join(d["text"] for name, d in events if name == "delta") == answer["answer"]
                        else:
                            answer = r.json()
                        assert_answer_is_whole(answer)
                        answers.append(answer)
                    except Exception as exc:  # reported below, with the others
                        failures.append(repr(exc))

        def writer(order: list[dict[str, Any]]) -> None:
            with httpx.Client(base_url=url, timeout=120) as http:
                for article in order:
                    r = http.post("/v1/documents", json=article)
                    if r.status_code not in (200, 201):
                        failures.append(f"write {article['id']}: {r.status_code} {r.text[:200]}")
                        continue
                    [doc] = r.json()["documents"]
                    if (r.status_code == 200) != (doc["outcome"] == "unchanged"):  # 200 only when nothing changed
                        failures.append(f"write {article['id']}: {r.status_code} for {doc['outcome']}")
                    writes.append((doc["doc_id"], doc["chunks"], doc["outcome"]))

        # Two writers send the same 20 articles in opposite orders: each must end up indexed once.
        writer_threads = [threading.Thread(target=writer, args=(order,)) for order in (new, new[::-1])]
        chatters = [threading.Thread(target=chat_client, args=(k,)) for k in range(16)]
        for t in chatters + writer_threads:
            t.start()
        for t in writer_threads:
            t.join(timeout=180)
        writers_done.set()
        for t in chatters:
            t.join(timeout=180)
        assert not any(t.is_alive() for t in chatters + writer_threads)
        assert not failures, failures[:5]

        listed = httpx.get(f"{url}/v1/documents", timeout=30).json()
        ids = [d["doc_id"] for d in listed["documents"]]
        assert len(ids) == len(set(ids)) == listed["total"] == len(SEED_IDS) + len(new)
        chunks = {d["doc_id"]: d["chunks"] for d in listed["documents"]}
        assert {k: chunks[k] for k in expected} == expected
        assert all(httpx.get(f"{url}/v1/documents/{a['id']}", timeout=30).status_code == 200 for a in new[:3])
        asked_after = httpx.post(f"{url}/v1/chat", json={"question": new[0]["text"].split("\n")[0][:200]}, timeout=30)
        assert asked_after.status_code == 200

    # Each article was added once, then found unchanged by the other writer.
    outcomes = Counter((doc, outcome) for doc, _, outcome in writes)
    assert all(outcomes[(a["id"], "added")] == 1 and outcomes[(a["id"], "unchanged")] == 1 for a in new), outcomes
    assert all(n == expected[doc] for doc, n, _ in writes)
    assert len(answers) >= 16 * 3

    state = read_store(settings.data_dir, "edge", settings.embed)  # the server is stopped: the store reopens
    assert_consistent(state)
    per_doc = Counter(doc for doc, _ in state.chunks.values())
    assert {k: per_doc[k] for k in expected} == expected


# -- 3. an LLM endpoint that hangs, fails, garbles or drops --------------------------------------------------------


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[tuple[FakeOpenAI, str]]:
    with run_fake_openai() as running:
        yield running


@pytest.fixture(scope="module")
def llm_engine(fake_llm: tuple[FakeOpenAI, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sanad]:
    settings = Settings.in_memory(tmp_path_factory.mktemp("llm"), llm=LLMSettings(
        base_url=fake_llm[1], api_key=SecretStr("x"), model="fake-model", timeout=1))
    engine = Sanad.open(settings)
    index_seeds(engine, settings)
    yield engine
    engine.close()


@pytest.fixture
def llm_api(llm_engine: Sanad, fake_llm: tuple[FakeOpenAI, str], tmp_path: Path) -> Iterator[tuple[TestClient,
                                                                                                   FakeOpenAI]]:
    fake = fake_llm[0]
    fake.reset()
    fake.hang_seconds = 30  # far beyond the 1 s timeout: an answer before it means Sanad gave up waiting
    fake.reply = lambda messages: "استضافت القاهرة اجتماعًا أمنيًا رفيع المستوى [1] حضره رؤساء أجهزة المخابرات [1]."
    with TestClient(create_app(llm_engine.settings.model_copy(update={"data_dir": tmp_path}), llm_engine)) as client:
        yield client, fake
    fake.reset()


def _shown_after_last_reset(events: list[tuple[str, Any]], text_of: Any) -> str:
    names = [name for name, _ in events]
    cut = max((i for i, name in enumerate(names) if name == "reset"), default=-1)
    return "".join(text_of(data) for name, data in events[cut + 1 :] if text_of(data) is not None and name != "reset")


@pytest.mark.parametrize("mode", ["hang", "error500", "malformed", "drop"])
def test_a_failing_llm_degrades_every_route_to_the_offline_answer(llm_api: tuple[TestClient, FakeOpenAI],
                                                                  mode: str) -> None:
    """The cases test_service_api.py does not make: streamed answers for every failure, and the plain routes for
    a dropped connection. Each is the offline answer, marked degraded, long before the hanging call would end."""
    client, fake = llm_api
    fake.mode = mode  # type: ignore[assignment]
    t0 = time.monotonic()

    if mode == "drop":  # streamed, this case is in test_service_api.py
        plain = client.post("/v1/chat", json={"question": Q_WHO})
        assert plain.status_code == 200 and plain.json()["degraded"] is True
        assert plain.json()["answerer"] == "extractive"
        assert_answer_is_whole(plain.json())
        completion = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": Q_WHO}]})
        assert completion.status_code == 200 and completion.json()["sanad"]["degraded"] is True
        assert len(fake.bodies("/chat/completions")) == 2  # the model was asked each time
        return

    events = parse_sse(client.post("/v1/chat", json={"question": Q_WHO, "stream": True}).text)
    assert [name for name, _ in events][-2:] == ["answer", "done"]
    final = dict(events)["answer"]
    assert final["degraded"] is True and final["answerer"] == "extractive" and final["answerable"]
    assert CAIRO_MEETING in {c["doc_id"] for c in final["citations"]}
    assert_answer_is_whole(final)
    assert _shown_after_last_reset(events, lambda d: d.get("text") if isinstance(d, dict) else None) == final["answer"]

    chunks = parse_sse(client.post("/v1/chat/completions", json={
        "stream": True, "messages": [{"role": "user", "content": Q_WHO}]}).text)
    assert chunks[-1] == ("message", "[DONE]")
    last = chunks[-2][1]
    assert last["choices"][0]["finish_reason"] == "stop" and last["sanad"]["degraded"] is True
    assert last["sanad"]["answerable"] and {c["n"] for c in last["citations"]} == {
        int(n) for n in _MARKER.findall(last["sanad"]["answer"])}
    # Two calls to an endpoint that (in "hang") would answer after 30 s each: none waited for it.
    assert time.monotonic() - t0 < fake.hang_seconds
    assert len(fake.bodies("/chat/completions")) == 2  # the model was asked each time


# -- 4. a Qdrant server that is down when the service starts -------------------------------------------------------


def test_service_starts_without_qdrant_says_why_and_recovers_when_it_comes_up(tmp_path: Path) -> None:
    qdrant_port = free_port()
    while (port := free_port()) == qdrant_port:
        pass
    qdrant_url, url = f"http://127.0.0.1:{qdrant_port}", f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    env = clean_env(SANAD_QDRANT__URL=qdrant_url, SANAD_QDRANT__TIMEOUT="1",
                    SANAD_SERVICE__STORE_RETRY_SECONDS="0.3", SANAD_SERVICE__RATE_LIMIT_PER_MINUTE="0")
    with log.open("wb") as out:
        proc = subprocess.Popen(sanad("serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                                      str(tmp_path / "data")), env=env, cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT)
    first = FakeQdrant()  # where the seeds are written, on a port of its own
    live: FakeQdrant | None = None
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                assert proc.poll() is None, log.read_text()
                with contextlib.suppress(httpx.TransportError):
                    if http.get("/healthz").status_code == 200:
                        break
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            # It says so: on its console, in readiness, and to every request that needs the store.
            said = log.read_text()
            assert "not reachable" in said and qdrant_url in said and "503" in said, said
            ready = http.get("/readyz")
            assert ready.status_code == 503
            body = ready.json()
            assert body["status"] == "unavailable" and body["store"]["ok"] is False
            assert "not reachable" in body["store"]["reason"]
            for response in (http.post("/v1/chat", json={"question": Q_WHO}), http.get("/v1/documents"),
                             http.post("/v1/search", json={"query": "القاهرة"})):
                assert response.status_code == 503, response.text
                error = response.json()["error"]
                assert error["code"] == "store_unavailable" and "not reachable" in error["message"]

            # Qdrant comes up, already holding the seeds (written through a Sanad engine pointed at it).
            first.start()
            writer_settings = Settings(data_dir=tmp_path / "writer", qdrant=QdrantSettings(url=first.url))
            writer = Sanad.open(writer_settings)
            try:
                index_seeds(writer, writer_settings)
            finally:
                writer.close()
            first.stop()
            live = FakeQdrant(port=qdrant_port)
            live.backend = first.backend
            live.start()

            deadline = time.monotonic() + START_TIMEOUT
            while (ready := http.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, ready.text
                time.sleep(0.1)
            assert ready.json()["store"]["chunks"] > 0
            answer = http.post("/v1/chat", json={"question": Q_WHO})
            assert answer.status_code == 200, answer.text
            assert answer.json()["answerable"] and CAIRO_MEETING in {c["doc_id"] for c in answer.json()["citations"]}
            assert http.get("/v1/documents").json()["total"] == len(SEED_IDS)

            # It goes away again, and comes back: 503 with the reason meanwhile, then answers again.
            live.stop()
            down = http.post("/v1/chat", json={"question": Q_WHO})
            assert down.status_code == 503 and down.json()["error"]["code"] == "store_unavailable"
            assert http.get("/readyz").status_code == 503
            live.start()
            assert http.post("/v1/chat", json={"question": Q_WHO}).status_code == 200
            assert "reachable" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if live is not None:
            live.stop()
        first.close()


# -- 5. too much, too slowly, too long -----------------------------------------------------------------------------


@pytest.fixture
def slow_limits(seeded_engine: Sanad, tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    settings = Settings.in_memory(tmp_path, service=ServiceSettings(
        body_timeout=1, header_timeout=1.5, max_body_bytes=4096, rate_limit_per_minute=0))
    with serving(create_app(settings, seeded_engine), settings) as url:
        yield url, settings


def _read_response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(30)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _trickle(url: str, head: bytes, body: bytes, every: float) -> tuple[bytes, int]:
    """Send ``head``, then ``body`` one byte every ``every`` seconds until the server answers; returns the
    server's reply and how many body bytes were sent."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sent = 0
    try:
        sock.sendall(head)
        for byte in body:
            readable, _, _ = select.select([sock], [], [], every)
            if readable:  # the server answered (and closes): stop sending, or the close becomes a reset
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sent += 1
        return _read_response(sock), sent
    finally:
        sock.close()


def test_a_slow_body_is_cut_off_with_408_while_others_are_served(slow_limits: tuple[str, Settings]) -> None:
    url, settings = slow_limits
    body = json.dumps({"question": Q_WHO}).encode()
    head = (b"POST /v1/chat HTTP/1.1\r\nHost: sanad\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    result: dict[str, Any] = {}
    slow = threading.Thread(target=lambda: result.update(zip(("reply", "sent"),
                                                              _trickle(url, head, body, every=0.2), strict=True)))
    slow.start()
    served = []
    with httpx.Client(base_url=url, timeout=30) as http:
        while slow.is_alive() and len(served) < 50:  # other clients keep being answered meanwhile
            r = http.post("/v1/chat", json={"question": Q_WHO})
            assert r.status_code == 200
            served.append(r)
    slow.join(timeout=60)
    reply = result["reply"].decode("utf-8", "replace")
    assert reply.startswith("HTTP/1.1 408"), reply
    assert result["sent"] < len(body)  # cut off before the body was complete
    error = json.loads(reply.split("\r\n\r\n", 1)[1])["error"]
    assert error["code"] == "request_timeout" and f"{settings.service.body_timeout:g} s" in error["message"]
    assert "connection: close" in reply.lower()
    assert served  # answered while the slow request was pending
    assert httpx.post(f"{url}/v1/chat", json={"question": Q_WHO}, timeout=30).status_code == 200


def test_slow_or_missing_headers_are_cut_off(slow_limits: tuple[str, Settings]) -> None:
    url, _ = slow_limits
    head = b"POST /v1/chat HTTP/1.1\r\nHost: sanad\r\nContent-Type: application/json\r\nX-Padding: " + b"a" * 200
    result: dict[str, Any] = {}
    slow = threading.Thread(target=lambda: result.update(zip(("reply", "sent"),
                                                              _trickle(url, b"", head, every=0.2), strict=True)))
    slow.start()
    host, port = url.removeprefix("http://").split(":")
    idle = socket.create_connection((host, int(port)))  # opens a connection and never sends a byte
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.post("/v1/chat", json={"question": Q_WHO}).status_code == 200
        assert _read_response(idle).startswith(b"HTTP/1.1 408")
    finally:
        idle.close()
    slow.join(timeout=60)
    assert result["reply"].startswith(b"HTTP/1.1 408") and result["sent"] < len(head)


def test_an_oversized_body_is_refused_before_it_is_read(slow_limits: tuple[str, Settings]) -> None:
    url, settings = slow_limits
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v1/documents HTTP/1.1\r\nHost: sanad\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 50000000\r\n\r\n" + b"{" * 1000)
        reply = _read_response(sock).decode()  # the server answers and closes without waiting for 50 MB
    assert reply.startswith("HTTP/1.1 413") and "connection: close" in reply.lower()
    assert json.loads(reply.split("\r\n\r\n", 1)[1])["error"]["code"] == "body_too_large"
    with httpx.Client(base_url=url, timeout=30) as http:
        # A client that sends all of a big body before reading (as httpx does) still reads the 413, not a reset:
        # the server answers, then drops what keeps arriving before it closes. With or without a length.
        big = b'{"id": "x", "text": "' + b"x" * 8_000_000 + b'"}'
        r = http.post("/v1/documents", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        r = http.post("/v1/documents", content=iter([big[i : i + 65536] for i in range(0, len(big), 65536)]),
                      headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        assert f"{settings.service.max_body_bytes} bytes" in r.json()["error"]["message"]
        assert http.get("/v1/documents").json()["total"] == len(SEED_IDS)


def test_a_very_long_conversation_is_bounded(seeded_engine: Sanad, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    max_turns, history_turns, exchanges = 6, 2, 15
    settings = Settings.in_memory(tmp_path, service=ServiceSettings(max_turns=max_turns, history_turns=history_turns,
                                                                    rate_limit_per_minute=0))
    seen: list[list[Turn]] = []
    rewrite = seeded_engine.rewrite

    def spy(question: str, history: list[Turn]) -> tuple[str | None, bool]:
        seen.append(list(history))
        return rewrite(question, history)

    monkeypatch.setattr(seeded_engine, "rewrite", spy)
    questions = [SEED_QUESTIONS[i % len(SEED_QUESTIONS)] + f" ({i})" for i in range(exchanges)]
    db = sqlite3.connect(str(tmp_path / DB_NAME))
    with TestClient(create_app(settings, seeded_engine)) as client:
        sid = None
        rows_seen = []
        for i, q in enumerate(questions):
            before = client.get(f"/v1/sessions/{sid}").json()["turns"] if sid else []
            r = client.post("/v1/chat", json={"question": q, "session_id": sid, "stream": i % 2 == 1})
            assert r.status_code == 200
            if sid is None:
                sid = r.json()["session_id"]
            # The follow-up context is the newest history_turns turns of what was stored, nothing older.
            assert [(t.role, t.content) for t in seen[-1]] == [(t["role"], t["content"])
                                                               for t in before[-history_turns:]]
            rows_seen.append(db.execute("SELECT COUNT(*) FROM turns WHERE session_id = ?", (sid,)).fetchone()[0])
        turns = client.get(f"/v1/sessions/{sid}").json()["turns"]
        assert len(turns) == max_turns
        assert [t["content"] for t in turns if t["role"] == "user"] == questions[-max_turns // 2:]
        assert max(rows_seen) == max_turns and rows_seen[-5:] == [max_turns] * 5  # the store stops growing
        assert all(len(h) <= history_turns for h in seen)

        # The OpenAI-compatible route: the client sends the whole conversation, Sanad uses its end.
        seen.clear()
        messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"رسالة رقم {i}"} for i in range(400)]
        messages.append({"role": "user", "content": Q_WHO})
        r = client.post("/v1/chat/completions", json={"messages": messages})
        assert r.status_code == 200
        assert [t.content for t in seen[-1]] == [m["content"] for m in messages[-1 - history_turns : -1]]
    db.close()
