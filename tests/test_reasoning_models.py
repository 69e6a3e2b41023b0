"""Models that behave like the servers users run: reasoning models (Qwen3, DeepSeek-R1 behind llama.cpp,
Ollama or vLLM), usage-only chunks, empty ``choices``, and a stream that trickles. Through ``sanad ask`` and
``/v1/chat`` streamed, as a user meets them: no thinking is shown, cited or stored, and no marker is invented."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from rag.engine import Sanad
from rag.models import Turn
from rag.reasoning import ReasoningFilter, strip_reasoning
from rag.settings import LLMSettings, Settings
from sanad.cli import app as cli_app
from service.app import create_app
from tests.conftest import SEEDS, index_seeds
from tests.fakes.openai_server import FakeOpenAI, run_fake_openai
from tests.sse import parse_sse

Q_WHO = "من شارك في الاجتماع الأمني الذي استضافته القاهرة؟"
ANSWER = "استضافت القاهرة اجتماعًا أمنيًا رفيع المستوى [1]."
THINKING = "The user asks who attended. Passage [3] mentions Qatar, passage [2] Turkey; maybe [7]. Let me think"
_MARKER = re.compile(r"\[(\d+)\]")
TIMEOUT = 2.0


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeOpenAI, str]]:
    with run_fake_openai() as running:
        yield running


@pytest.fixture
def fake(server: tuple[FakeOpenAI, str]) -> Iterator[FakeOpenAI]:
    server[0].reset()
    yield server[0]
    server[0].reset()


@pytest.fixture(scope="module")
def llm_engine(server: tuple[FakeOpenAI, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sanad]:
    llm = LLMSettings(base_url=server[1], api_key="x", model="fake-model", timeout=TIMEOUT)
    settings = Settings.in_memory(tmp_path_factory.mktemp("reasoning"), llm=llm)
    engine = Sanad.open(settings)
    index_seeds(engine, settings)
    yield engine
    engine.close()


@pytest.fixture
def api(llm_engine: Sanad, fake: FakeOpenAI, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(llm_engine.settings.model_copy(update={"data_dir": tmp_path}), llm_engine)) as client:
        yield client


@pytest.fixture(scope="module")
def cli_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "data"
    result = CliRunner().invoke(cli_app, ["index", str(SEEDS), "--data-dir", str(folder)])
    assert result.exit_code == 0, result.stderr
    return folder


def sanad_ask(data_dir: Path, base_url: str, question: str = Q_WHO) -> dict[str, Any]:
    env = {"SANAD_LLM__BASE_URL": base_url, "SANAD_LLM__API_KEY": "x", "SANAD_LLM__MODEL": "fake-model",
           "SANAD_LLM__TIMEOUT": str(TIMEOUT)}
    result = CliRunner().invoke(cli_app, ["ask", question, "--json", "--data-dir", str(data_dir)], env=env)
    assert result.exit_code == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def chat_streamed(client: TestClient, question: str = Q_WHO) -> tuple[str, dict[str, Any]]:
    """What the client shows after the last reset, and the final answer event."""
    events = parse_sse(client.post("/v1/chat", json={"question": question, "stream": True}).text)
    assert [name for name, _ in events][-2:] == ["answer", "done"]
    names = [name for name, _ in events]
    cut = max((i for i, name in enumerate(names) if name == "reset"), default=-1)
    shown = "".join(d["text"] for name, d in events[cut + 1 :] if name == "delta")
    return shown, dict(events)["answer"]


def assert_model_answer_kept(answer: dict[str, Any]) -> None:
    assert answer["answerer"] == "llm" and answer["degraded"] is False and answer["answerable"]
    assert "think" not in answer["answer"].lower() and "Passage" not in answer["answer"]
    assert answer["answer"].startswith("استضافت القاهرة")
    assert {int(n) for n in _MARKER.findall(answer["answer"])} == {c["n"] for c in answer["citations"]} == {1}


def assert_offline_degraded(answer: dict[str, Any]) -> None:
    assert answer["answerer"] == "extractive" and answer["degraded"] is True
    assert "think" not in answer["answer"].lower()
    assert {int(n) for n in _MARKER.findall(answer["answer"])} == {c["n"] for c in answer["citations"]}


# -- the filter itself -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reply, visible", [
    ("<think>a [3] b</think>Answer [1].", "Answer [1]."),
    ("<think>\nplan\n</think>\n\nAnswer [1].", "\n\nAnswer [1]."),
    ("Answer <thinking>hmm [2]</thinking>[1].", "Answer [1]."),
    ("<THINK>x</THINK>y", "y"),
    ("reasoning opened by the template </think>Answer [1].", "Answer [1]."),
    ("<think>never closed [2]", ""),
    ("if a < b then <thin", "if a < b then <thin"),  # not tags: kept
])
def test_reasoning_is_removed_whole_and_in_any_pieces(reply: str, visible: str) -> None:
    assert strip_reasoning(reply) == visible
    for size in (1, 2, 3, 7):
        f, shown = ReasoningFilter(), ""
        for i in range(0, len(reply), size):
            piece = f.feed(reply[i : i + size])
            if f.take_restart():
                shown = ""
            shown += piece
        assert shown + f.finish() == visible


# -- through sanad ask and /v1/chat --------------------------------------------------------------------------------


@pytest.mark.parametrize("reply", [
    f"<think>{THINKING}</think>\n\n{ANSWER}",
    f"{THINKING}</think>{ANSWER}",  # the chat template opened the block: only its end shows
    f"<think>{THINKING}</think>استضافت القاهرة <think>again [2]</think>اجتماعًا أمنيًا رفيع المستوى [1].",
])
def test_thinking_in_the_content_is_never_shown_or_cited(fake: FakeOpenAI, api: TestClient, cli_data: Path,
                                                         server: tuple[FakeOpenAI, str], reply: str) -> None:
    fake.reply = lambda messages: reply
    assert_model_answer_kept(sanad_ask(cli_data, server[1]))
    shown, answer = chat_streamed(api)
    assert_model_answer_kept(answer)
    assert shown == answer["answer"]
    session = api.get(f"/v1/sessions/{answer['session_id']}").json()
    assert all("think" not in t["content"].lower() and "Passage" not in t["content"] for t in session["turns"])


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_a_reasoning_field_is_never_shown(fake: FakeOpenAI, api: TestClient, cli_data: Path,
                                          server: tuple[FakeOpenAI, str], field: str) -> None:
    fake.reply = lambda messages: ANSWER
    fake.reasoning, fake.reasoning_field = THINKING, field
    assert_model_answer_kept(sanad_ask(cli_data, server[1]))
    shown, answer = chat_streamed(api)
    assert_model_answer_kept(answer)
    assert shown == answer["answer"]


@pytest.mark.parametrize("reply, reasoning", [(f"<think>{THINKING}", None), ("", THINKING)])
def test_a_model_that_only_thinks_gives_the_degraded_offline_answer(fake: FakeOpenAI, api: TestClient,
                                                                    cli_data: Path, server: tuple[FakeOpenAI, str],
                                                                    reply: str, reasoning: str | None) -> None:
    fake.reply = lambda messages: reply
    fake.reasoning = reasoning
    assert_offline_degraded(sanad_ask(cli_data, server[1]))
    shown, answer = chat_streamed(api)
    assert_offline_degraded(answer)
    assert shown == answer["answer"] and "Passage" not in shown


def test_a_final_usage_only_chunk_is_harmless(fake: FakeOpenAI, api: TestClient, cli_data: Path,
                                              server: tuple[FakeOpenAI, str]) -> None:
    fake.reply = lambda messages: ANSWER
    fake.usage_chunk = True
    assert_model_answer_kept(sanad_ask(cli_data, server[1]))
    shown, answer = chat_streamed(api)
    assert_model_answer_kept(answer)
    assert shown == answer["answer"]


def test_an_empty_choices_list_gives_the_degraded_offline_answer(fake: FakeOpenAI, api: TestClient,
                                                                 cli_data: Path,
                                                                 server: tuple[FakeOpenAI, str]) -> None:
    fake.mode = "empty_choices"
    assert_offline_degraded(sanad_ask(cli_data, server[1]))
    shown, answer = chat_streamed(api)
    assert_offline_degraded(answer)
    assert shown == answer["answer"]


def test_a_trickling_model_is_cut_off_at_the_timeout(fake: FakeOpenAI, api: TestClient, cli_data: Path,
                                                     server: tuple[FakeOpenAI, str]) -> None:
    """One word every 0.4 s for 60 words: each read is quick, the whole answer would take 24 s."""
    fake.reply = lambda messages: " ".join(["استضافت القاهرة اجتماعًا [1]."] * 20)
    fake.trickle_seconds = 0.4
    t0 = time.monotonic()
    assert_offline_degraded(sanad_ask(cli_data, server[1]))
    assert time.monotonic() - t0 < TIMEOUT + 8  # a deadline with a wide margin, far below the 24 s stream
    t0 = time.monotonic()
    shown, answer = chat_streamed(api)
    assert time.monotonic() - t0 < TIMEOUT + 8
    assert_offline_degraded(answer)
    assert shown == answer["answer"]  # what was streamed before the cut was reset


def test_a_follow_up_rewrite_drops_the_thinking(fake: FakeOpenAI, llm_engine: Sanad) -> None:
    def reply(messages: list[dict[str, Any]]) -> str:
        if "Rewrite the user's last question" in messages[0]["content"]:
            return "<think>They mean the Cairo meeting.</think>من شارك في الاجتماع الأمني في القاهرة؟"
        return ANSWER

    fake.reply = reply
    history = [Turn(role="user", content="ما الاجتماع الأمني في القاهرة؟"), Turn(role="assistant", content="...")]
    answer = llm_engine.ask("ومن شارك فيه؟", history=history)
    assert answer.rewritten_question == "من شارك في الاجتماع الأمني في القاهرة؟"
    assert answer.answerer == "llm" and not answer.degraded
