"""The service as users run it: ``sanad serve`` in its own process on 127.0.0.1, on a data directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from rag.store import OWNER_FILE
from tests.conftest import VECTOR_CACHE
from tests.servers import free_port

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
KEY = "test-key-7f3a"
CAIRO_MEETING = "003_046bdc7566d0cd7e"
Q_WHO = "من شارك في الاجتماع الأمني الذي استضافته القاهرة؟"
Q_WHEN = "ومتى عقد؟"
START_TIMEOUT = 60.0


def _serve_command(data_dir: Path, port: int) -> list[str]:
    """``sanad serve`` when the CLI has it, else the same entry point through ``python -m service``."""
    from sanad.cli import app

    args = ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    if "serve" in {c.name or getattr(c.callback, "__name__", "") for c in app.registered_commands}:
        return [sys.executable, "-m", "sanad.cli", "serve", *args]
    return [sys.executable, "-m", "service", *args]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANAD_")}
    env["SANAD_EMBED__CACHE_PATH"] = str(VECTOR_CACHE)  # the run's shared vector cache (tests/conftest.py)
    env["SANAD_API_KEYS"] = KEY
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Server:
    def __init__(self, data_dir: Path, workdir: Path) -> None:
        self.data_dir = data_dir
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.workdir / f"server-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(_serve_command(self.data_dir, port), cwd=self.workdir, env=_env(),
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self, key: str | None = KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("served")
    srv = Server(workdir / "data", workdir)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def rival(server: Server) -> Iterator[subprocess.Popen[str]]:
    """A second server on the same data directory, started early so its start-up overlaps the other tests."""
    proc = subprocess.Popen(_serve_command(server.data_dir, free_port()), cwd=server.workdir, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def shared() -> dict[str, Any]:
    """Facts one test leaves for a later one (the conversation that must survive a restart)."""
    return {}


def doc_ids(citations: list[dict[str, Any]]) -> set[str]:
    return {c["doc_id"] for c in citations}


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    name, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                raw = "\n".join(data)
                yield name, raw if raw == "[DONE]" else json.loads(raw)
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def test_upload_and_converse_over_http(server: Server, shared: dict[str, Any],
                                       rival: subprocess.Popen[str]) -> None:
    with server.client() as http:
        for path in sorted(SEEDS.iterdir()):
            r = http.post("/v1/documents", files={"file": (path.name, path.read_bytes(), "text/plain")})
            assert r.status_code == 201, r.text
        docs = http.get("/v1/documents").json()
        assert docs["total"] == 5 and all(d["chunks"] > 0 for d in docs["documents"])

        first = http.post("/v1/chat", json={"question": Q_WHO}).json()
        assert first["answerable"] and CAIRO_MEETING in doc_ids(first["citations"])
        second = http.post("/v1/chat", json={"question": Q_WHEN, "session_id": first["session_id"]}).json()
        assert CAIRO_MEETING in doc_ids(second["citations"]) and second["rewritten_question"]
        shared["session"] = first["session_id"]
        shared["answers"] = [first["answer"], second["answer"]]

        assert http.get("/readyz").json()["status"] == "ready"
        assert httpx.get(f"{server.url}/v1/documents").status_code == 401
    owner = json.loads((server.data_dir / OWNER_FILE).read_text())
    assert owner["url"] == server.url and server.proc is not None and owner["pid"] == server.proc.pid


def test_sse_stream_over_a_socket(server: Server) -> None:
    with server.client() as http, http.stream("POST", "/v1/chat", json={"question": Q_WHO, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = list(_sse(r.iter_lines()))
    names = [n for n, _ in events]
    assert names[0] == "passages" and names[-2:] == ["answer", "done"] and "delta" in names
    final = events[-2][1]
    assert "".join(d["text"] for n, d in events if n == "delta") == final["answer"]
    assert CAIRO_MEETING in doc_ids(final["citations"])


def test_openai_client_gets_cited_answers(server: Server) -> None:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=30) as client:
        _openai_checks(client)
    with pytest.raises(openai.AuthenticationError), \
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0) as intruder:
        intruder.chat.completions.create(model="sanad", messages=[{"role": "user", "content": Q_WHO}])


def _openai_checks(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["sanad"]

    resp = client.chat.completions.create(model="sanad", messages=[{"role": "user", "content": Q_WHO}])
    text = resp.choices[0].message.content or ""
    assert "[1]" in text and "مصر وقطر وتركيا" in text
    assert "\n\nالمصادر:\n[1] " in text  # what [1] points at, in the content the SDK returns
    extra = resp.model_extra or {}
    assert CAIRO_MEETING in doc_ids(extra["citations"]) and extra["citations"][0]["quote"] in text

    follow = client.chat.completions.create(model="sanad", messages=[
        {"role": "user", "content": Q_WHO}, {"role": "assistant", "content": text},
        {"role": "user", "content": Q_WHEN}])
    assert CAIRO_MEETING in doc_ids((follow.model_extra or {})["citations"])

    stream = client.chat.completions.create(model="sanad", stream=True,
                                            messages=[{"role": "user", "content": Q_WHO}])
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert CAIRO_MEETING in doc_ids((chunks[0].model_extra or {})["citations"])
    assert chunks[-1].choices[0].finish_reason == "stop"
    numbers = [c["n"] for c in (chunks[-1].model_extra or {})["citations"]]
    assert numbers and numbers == list(range(1, len(numbers) + 1))


def test_second_server_on_the_same_data_dir_fails_naming_the_first(server: Server,
                                                                   rival: subprocess.Popen[str]) -> None:
    _, message = rival.communicate(timeout=START_TIMEOUT)
    assert rival.returncode != 0
    assert server.proc is not None
    assert "in use by another Sanad process" in message
    assert f"pid {server.proc.pid}" in message and server.url in message
    assert "Traceback" not in message
    # The first one is unharmed.
    with server.client() as http:
        assert http.post("/v1/chat", json={"question": Q_WHO}).status_code == 200


def test_conversation_survives_a_restart(server: Server, shared: dict[str, Any]) -> None:
    session = shared["session"]
    server.stop()
    assert not (server.data_dir / OWNER_FILE).exists()
    server.start()
    with server.client() as http:
        turns = http.get(f"/v1/sessions/{session}").json()["turns"]
        assert [t["content"] for t in turns if t["role"] == "user"] == [Q_WHO, Q_WHEN]
        assert [t["content"] for t in turns if t["role"] == "assistant"] == shared["answers"]
        assert http.get("/v1/documents").json()["total"] == 5
        again = http.post("/v1/chat", json={"question": "ومن مثل تركيا فيه؟", "session_id": session}).json()
        assert again["session_id"] == session and again["rewritten_question"]
        assert len(http.get(f"/v1/sessions/{session}").json()["turns"]) == 6


# -- generic clients and the CLI beside the running server ------------------------------------------------------------


def test_llm_cli_shows_the_sources_and_continues_the_conversation(server: Server, tmp_path: Path) -> None:
    home = tmp_path / "llm"
    home.mkdir()
    (home / "extra-openai-models.yaml").write_text(
        f'- model_id: sanad\n  model_name: sanad\n  api_base: "{server.url}/v1"\n  api_key_name: sanad\n')
    (home / "keys.json").write_text(json.dumps({"sanad": KEY}))
    env = {**os.environ, "LLM_USER_PATH": str(home)}
    llm = [sys.executable, "-m", "llm"]

    first = subprocess.run([*llm, "-m", "sanad", Q_WHO], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "[1]" in first.stdout and "المصادر:" in first.stdout
    assert "اجتماع طارئ -القاهرة" in first.stdout  # the title of what [1] points at

    follow = subprocess.run([*llm, "-c", Q_WHEN], env=env, capture_output=True, text=True, timeout=60)
    assert follow.returncode == 0, follow.stderr
    assert "المصادر:" in follow.stdout and "اجتماع طارئ -القاهرة" in follow.stdout

    logs = subprocess.run([*llm, "logs", "--json", "-n", "2"], env=env, capture_output=True, text=True, timeout=60)
    assert all("المصادر:" in r["response"] for r in json.loads(logs.stdout))


def _cli(server: Server, *args: str, key: str | None = KEY) -> subprocess.CompletedProcess[str]:
    env = _env()
    env.pop("SANAD_API_KEYS")
    if key is not None:
        env["SANAD_API_KEY"] = key
    return subprocess.run([sys.executable, "-m", "sanad.cli", *args, "--data-dir", str(server.data_dir)],
                          cwd=server.workdir, env=env, capture_output=True, text=True, timeout=120)


def test_the_cli_works_beside_the_running_server(server: Server, tmp_path: Path) -> None:
    asked = _cli(server, "ask", "--json", Q_WHO)
    assert asked.returncode == 0, asked.stderr
    assert f"via the Sanad server at {server.url}" in asked.stderr
    answer = json.loads(asked.stdout)
    assert CAIRO_MEETING in doc_ids(answer["citations"]) and answer["session_id"]

    follow = _cli(server, "ask", "--json", "-c", "ومن مثل تركيا فيه؟")
    assert follow.returncode == 0, follow.stderr
    again = json.loads(follow.stdout)
    assert again["session_id"] == answer["session_id"] and "كالين" in again["answer"]
    with server.client() as http:  # the server stored the conversation
        turns = http.get(f"/v1/sessions/{answer['session_id']}").json()["turns"]
        assert [t["content"] for t in turns if t["role"] == "user"] == [Q_WHO, "ومن مثل تركيا فيه؟"]

    article = tmp_path / "riyadh-bridge.txt"
    article.write_text("جسر جديد في الرياض\nافتتح وزير النقل جسرا معلقا جديدا يربط شرق الرياض بغربها.\n",
                       encoding="utf-8")
    indexed = _cli(server, "index", str(article))
    assert indexed.returncode == 0, indexed.stderr
    assert "1 documents (1 added, 0 updated, 0 unchanged)" in indexed.stdout
    listed = _cli(server, "documents", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "riyadh-bridge" in [d["doc_id"] for d in json.loads(listed.stdout)]
    bridge = json.loads(_cli(server, "ask", "--json", "ماذا افتتح وزير النقل في الرياض؟").stdout)
    assert bridge["citations"][0]["doc_id"] == "riyadh-bridge"

    refused = _cli(server, "documents", key="wrong-key")
    assert refused.returncode == 2 and "401" in refused.stderr and "SANAD_API_KEY" in refused.stderr
    rebuild = _cli(server, "index", "--rebuild", str(article))
    assert rebuild.returncode == 2 and "stop it to rebuild" in " ".join(rebuild.stderr.split())


def test_the_release_eval_runs_beside_the_server(server: Server) -> None:
    evaluated = _cli(server, "eval", "--limit", "2", "--report", str(server.workdir / "eval-report"))
    assert evaluated.returncode == 0, evaluated.stderr
    assert (server.workdir / "eval-report" / "report.md").is_file()
