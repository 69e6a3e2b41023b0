"""The Slack bot end to end: signed requests into the FastAPI app, a fake Slack Web API on 127.0.0.1.

Requests are signed exactly as Slack signs them; the bot's Web API calls (and response_url
posts) land on ``tests/fakes/slack_server.py``, which records them and can fail on demand.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import itertools
import json
import logging
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from typer.testing import CliRunner

import service.slack.bot as bot_module
from evals.gold import GoldItem
from index.ingest import Indexer
from rag.engine import Sanad
from rag.models import Answer, Article, Citation
from rag.settings import SecretStr, Settings, SlackSettings
from service.app import create_app
from service.slack import mount_slack
from service.slack.cli import feedback_app
from service.slack.feedback import export_feedback
from service.slack.format import (
    MAX_BLOCKS,
    SECTION_LIMIT,
    TEXT_LIMIT,
    ZWJ,
    clean_question,
    neutralize,
    render_answer,
    split_text,
)
from tests.fakes.slack_server import BOT_ID, BOT_USER_ID, TEAM_ID, FakeSlack, run_fake_slack

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
SECRET = "s3cret"
CAIRO_MEETING = "003_046bdc7566d0cd7e"
Q_WHO = "من شارك في الاجتماع الأمني الذي استضافته القاهرة؟"
Q_WHEN = "ومتى عقد؟"
Q_NOT_IN_SEEDS = "كم منتجا شارك في مهرجان التمور في واحة سيوة؟"
Q_OLIVES = "متى يبدأ مهرجان الزيتون في جرش؟"
# An article written to ping everyone if pasted into Slack as is.
NOISY = Article(
    id="olive-festival-jerash",
    title="تنبيه @channel <!here> <!channel>: مهرجان الزيتون في جرش",
    text="تنبيه @channel: مهرجان الزيتون في جرش\nأعلن المنظمون @channel و<@U12345> و<#C999|general> و@everyone "
         "و@here أن مهرجان الزيتون في جرش يبدأ يوم الخميس المقبل بمشاركة خمسين مزارعا <!here>.",
)
ACTIVE = ["<!here", "<!channel", "<!everyone", "<@U", "<#C"]
_ids = itertools.count(1)


# -- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fake_slack() -> Iterator[FakeSlack]:
    with run_fake_slack() as (fake, _):
        yield fake


@pytest.fixture(scope="module")
def slack_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sanad]:
    settings = Settings.in_memory(tmp_path_factory.mktemp("slack-engine"))
    engine = Sanad.open(settings)
    indexer = Indexer(engine.store, engine.encoder, engine.embedder, settings.index)
    assert indexer.index_paths([SEEDS]).added == 5
    indexer.index_article(NOISY)
    yield engine
    engine.close()


@dataclass
class Bot:
    client: TestClient
    fake: FakeSlack
    settings: Settings

    def post(self, body: bytes, content_type: str = "application/json", ts: int | None = None,
             secret: str = SECRET, headers: dict[str, str] | None = None) -> Any:
        return self.client.post("/slack/events", content=body,
                                headers={"Content-Type": content_type, **sign(body, ts, secret), **(headers or {})})

    def event(self, event: dict[str, Any], event_id: str | None = None, retry: int | None = None) -> str:
        event_id = event_id or f"Ev{next(_ids):08d}"
        body = json.dumps({"token": "x", "team_id": TEAM_ID, "api_app_id": "A1", "type": "event_callback",
                           "event_id": event_id, "event_time": int(time.time()), "event": event},
                          ensure_ascii=False).encode()
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else {}
        response = self.post(body, headers=headers)
        assert response.status_code == 200, response.text
        return event_id

    def form(self, fields: dict[str, str]) -> Any:
        return self.post(urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded")

    def drain(self) -> None:
        """Wait until the bot has no answer in progress."""
        bot = self.client.app.state.slack  # type: ignore[attr-defined]
        self.client.portal.call(bot.drain, 15.0)  # type: ignore[union-attr]


def sign(body: bytes, ts: int | None = None, secret: str = SECRET) -> dict[str, str]:
    """The headers Slack sends: ``v0=`` + HMAC-SHA256(secret, "v0:{ts}:{body}")."""
    stamp = str(int(time.time()) if ts is None else ts)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def slack_settings(tmp_path: Path, base_url: str, **slack: Any) -> Settings:
    return Settings.in_memory(tmp_path, slack=SlackSettings(bot_token=SecretStr("xoxb-test"),
                                                            signing_secret=SecretStr(SECRET),
                                                            api_base_url=base_url, **slack))


@pytest.fixture
def make_bot(tmp_path: Path, fake_slack: FakeSlack, slack_engine: Sanad) -> Iterator[Any]:
    fake_slack.reset()
    stack: list[TestClient] = []

    def make(**slack: Any) -> Bot:
        settings = slack_settings(tmp_path, fake_slack.base_url, **slack)
        app = create_app(settings, engine=slack_engine)
        # create_app mounts the bot itself (engine and store from its state); mounting again is a no-op.
        mount_slack(app, settings, slack_engine, None)
        assert [getattr(r, "path", None) for r in app.routes].count("/slack/events") == 1
        client = TestClient(app)
        client.__enter__()
        stack.append(client)
        return Bot(client, fake_slack, settings)

    yield make
    for client in stack:
        client.__exit__(None, None, None)


@pytest.fixture
def bot(make_bot: Any) -> Bot:
    return make_bot()


# -- helpers ----------------------------------------------------------------------------------------

def mention(text: str, ts: str, channel: str = "C1", thread_ts: str | None = None, user: str = "U1") -> dict[str, Any]:
    event = {"type": "app_mention", "user": user, "text": f"<@{BOT_USER_ID}> {text}", "ts": ts,
             "channel": channel, "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def dm(text: str, ts: str, **extra: Any) -> dict[str, Any]:
    return {"type": "message", "channel_type": "im", "channel": "D1", "user": "U1", "text": text, "ts": ts,
            "event_ts": ts, **extra}


def outbound(fake: FakeSlack) -> list[dict[str, Any]]:
    """Every message the bot sent (posted, updated, ephemeral, through response_url)."""
    return [c["args"] for c in fake.calls
            if c["method"] in ("chat.postMessage", "chat.update", "chat.postEphemeral", "response_url")]


def final(fake: FakeSlack) -> list[dict[str, Any]]:
    """The bot's messages as users now see them (placeholders replaced by their update)."""
    return fake.shown()


def answered(n: int) -> Any:
    return lambda fake: len([m for m in final(fake) if "⏳" not in m.get("text", "")]) >= n


def blocks_text(message: dict[str, Any]) -> str:
    return json.dumps(message.get("blocks", []), ensure_ascii=False)


def doc_ids(message: dict[str, Any]) -> list[str]:
    return [e["text"].split("`")[1] for b in message.get("blocks", []) if b["type"] == "context"
            for e in b["elements"] if "`" in e["text"]]


def button_value(message: dict[str, Any]) -> str:
    actions = [b for b in message["blocks"] if b["type"] == "actions"]
    assert actions, "no feedback buttons"
    return str(actions[0]["elements"][0]["value"])


# -- behaviour ----------------------------------------------------------------------------------------

def test_mention_gets_one_threaded_reply_with_sources(bot: Bot) -> None:
    bot.event(mention(Q_WHO, ts="1700000000.000100"))
    bot.fake.wait_for(answered(1))
    bot.drain()
    posts = bot.fake.calls_of("chat.postMessage")
    assert len(posts) == 1 and posts[0]["thread_ts"] == "1700000000.000100"
    assert "جارٍ البحث" in posts[0]["text"]  # the placeholder, in the question's language ...
    (reply,) = final(bot.fake)  # ... replaced by the answer
    assert reply["thread_ts"] == "1700000000.000100" and reply["channel"] == "C1"
    assert "[1]" in reply["text"] and CAIRO_MEETING in doc_ids(reply)
    assert "المصادر" in blocks_text(reply)
    update = bot.fake.calls_of("chat.update")[0]
    assert update["parse"] == "none" and update["link_names"] is False
    assert bot.fake.calls[0]["headers"]["authorization"] == "Bearer xoxb-test"


def test_follow_up_in_the_thread_is_answered_in_context(bot: Bot) -> None:
    bot.event(mention(Q_WHO, ts="1700000001.000100"))
    bot.fake.wait_for(answered(1))
    # Alone, "when was it held?" finds the January online meeting, not the Cairo one.
    bot.event(mention(Q_WHEN, ts="1700000001.000200", thread_ts="1700000001.000100"))
    bot.fake.wait_for(answered(2))
    bot.drain()
    follow_up = final(bot.fake)[1]
    assert follow_up["thread_ts"] == "1700000001.000100"
    assert CAIRO_MEETING in doc_ids(follow_up)
    assert "25 نوفمبر" in blocks_text(follow_up)
    # The thread is one stored conversation.
    conversations = bot.client.app.state.sanad.conversations  # type: ignore[attr-defined]
    session = f"slack:{TEAM_ID}:C1:1700000001.000100"
    assert [t.content for t in conversations.history(session, 10) if t.role == "user"] == [Q_WHO, Q_WHEN]


def test_direct_message_is_answered_in_its_thread(bot: Bot) -> None:
    bot.event(dm(Q_WHO, ts="1700000002.000100"))
    bot.fake.wait_for(answered(1))
    bot.drain()
    (reply,) = final(bot.fake)
    assert reply["channel"] == "D1" and reply["thread_ts"] == "1700000002.000100"
    assert CAIRO_MEETING in doc_ids(reply)


def test_retried_event_gets_no_second_reply(bot: Bot) -> None:
    event = mention(Q_WHO, ts="1700000003.000100")
    event_id = bot.event(event)
    bot.fake.wait_for(answered(1))
    bot.event(event, event_id=event_id, retry=1)
    bot.event(event, event_id=event_id, retry=2)
    # The same message delivered again under another event id (e.g. also as message.im) is not re-answered.
    bot.event(event)
    bot.drain()
    assert len(bot.fake.calls_of("chat.postMessage")) == 1
    assert len(bot.fake.calls_of("chat.update")) == 1


def test_with_its_database_unreachable_the_bot_still_answers_without_rating_buttons(
        bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.database import DatabaseUnavailable
    from service.slack.store import SlackStore

    def down(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseUnavailable("database unavailable: connection refused")

    for name in ("first_sighting", "add_answer", "set_message_ts"):
        monkeypatch.setattr(SlackStore, name, down)
    bot.event(mention(Q_WHO, ts="1700000004.000100"))
    bot.fake.wait_for(answered(1))
    bot.drain()
    (reply,) = final(bot.fake)
    assert CAIRO_MEETING in doc_ids(reply)
    assert "sanad_feedback" not in json.dumps(reply.get("blocks"))  # a click could not be stored


@pytest.mark.parametrize("case", ["bad signature", "stale timestamp", "no signature"])
def test_bad_or_stale_signatures_are_rejected_before_any_work(bot: Bot, case: str) -> None:
    body = json.dumps({"type": "event_callback", "team_id": TEAM_ID, "event_id": "EvBAD",
                       "event": mention(Q_WHO, ts="1700000004.000100")}).encode()
    if case == "bad signature":
        response = bot.post(body, secret="wrong")
    elif case == "stale timestamp":
        response = bot.post(body, ts=int(time.time()) - 6 * 60)
    else:
        response = bot.client.post("/slack/events", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    time.sleep(0.2)
    assert bot.fake.calls == []


def test_bots_edits_deletions_and_channel_messages_are_ignored(bot: Bot) -> None:
    ignored = [
        dm(Q_WHO, ts="1700000005.000001", bot_id="B999"),                                  # another bot
        dm(Q_WHO, ts="1700000005.000002", subtype="bot_message", bot_id="B999"),
        {**dm(Q_WHO, ts="1700000005.000003", bot_id=BOT_ID), "user": BOT_USER_ID},          # itself
        dm(Q_WHO, ts="1700000005.000004", subtype="message_changed"),
        dm(Q_WHO, ts="1700000005.000005", subtype="message_deleted"),
        {**dm(Q_WHO, ts="1700000005.000006"), "channel_type": "channel", "channel": "C1"},  # not a mention
        {**mention(Q_WHO, ts="1700000005.000007"), "bot_id": "B999"},                       # a bot mentioning us
    ]
    for event in ignored:
        bot.event(event)
    bot.event(dm(Q_WHO, ts="1700000005.000100"))  # then a person: the only answer
    bot.fake.wait_for(answered(1))
    bot.drain()
    assert [p["thread_ts"] for p in bot.fake.calls_of("chat.postMessage")] == ["1700000005.000100"]


def test_empty_mention_and_file_get_a_usage_hint(bot: Bot) -> None:
    bot.event(mention("", ts="1700000006.000100"))
    bot.event(dm("", ts="1700000006.000200", subtype="file_share", files=[{"id": "F1"}]))
    bot.fake.wait_for(lambda f: len(f.calls_of("chat.postMessage")) >= 2)
    bot.drain()
    posts = bot.fake.calls_of("chat.postMessage")
    assert len(posts) == 2 and all("/sanad" in p["text"] for p in posts)
    assert not bot.fake.calls_of("chat.update")


def test_rate_limited_post_is_retried_and_the_answer_arrives(bot: Bot) -> None:
    bot.fake.fail_next("chat.postMessage", status=429, times=1)  # Retry-After: 1
    bot.fake.fail_next("chat.update", status=503, times=1)
    bot.event(mention(Q_WHO, ts="1700000007.000100"))
    bot.fake.wait_for(answered(1), timeout=15)
    bot.drain()
    assert len(bot.fake.calls_of("chat.postMessage")) == 2  # the 429, then the retry
    assert len(bot.fake.calls_of("chat.update")) == 2  # the 503, then the retry
    assert CAIRO_MEETING in doc_ids(final(bot.fake)[0])


def test_a_final_web_api_failure_is_logged_with_the_event_id_and_the_service_stays_up(
        make_bot: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = FixedValueRetryIntervalCalculator(0.01)  # the real backoff would take seconds
    monkeypatch.setattr(bot_module, "retry_handlers",
                        lambda: [bot_module._ServerErrorRetry(max_retry_count=3, interval_calculator=fast)])
    bot = make_bot()
    bot.fake.fail_next("chat.postMessage", status=500, times=8)  # 1 + 3 retries, twice
    with caplog.at_level(logging.ERROR, logger="sanad.slack"):
        event_id = bot.event(mention(Q_WHO, ts="1700000008.000100"))
        bot.drain()
    assert any(event_id in r.getMessage() and "chat.postMessage" in r.getMessage() for r in caplog.records)
    assert len(bot.fake.calls_of("chat.postMessage")) == 8
    assert bot.client.get("/healthz").status_code == 200
    bot.fake.reset()
    bot.event(mention(Q_WHO, ts="1700000008.000200"))
    bot.fake.wait_for(answered(1))


def test_slash_command_answers_ephemerally(bot: Bot) -> None:
    response = bot.form({"command": "/sanad", "text": Q_WHO, "user_id": "U1", "channel_id": "C1",
                         "team_id": TEAM_ID, "trigger_id": "t1", "response_url": bot.fake.response_url("slash")})
    assert response.status_code == 200
    assert response.json()["response_type"] == "ephemeral"  # the immediate ack: "searching"
    bot.fake.wait_for(lambda f: len(f.calls_of("response_url")) >= 1)
    bot.drain()
    (reply,) = bot.fake.calls_of("response_url")
    assert reply["response_type"] == "ephemeral" and reply["_url_name"] == "slash"
    assert CAIRO_MEETING in doc_ids(reply)
    assert not bot.fake.calls_of("chat.postMessage")


def test_slash_command_in_channel_when_configured(make_bot: Any) -> None:
    bot = make_bot(slash_in_channel=True)
    response = bot.form({"command": "/sanad", "text": Q_WHO, "user_id": "U1", "channel_id": "C1",
                         "team_id": TEAM_ID, "response_url": bot.fake.response_url("slash")})
    assert response.json()["response_type"] == "in_channel"
    bot.fake.wait_for(lambda f: len(f.calls_of("response_url")) >= 1)
    bot.drain()
    assert bot.fake.calls_of("response_url")[0]["response_type"] == "in_channel"


def test_empty_slash_command_gets_usage(bot: Bot) -> None:
    response = bot.form({"command": "/sanad", "text": "  ", "user_id": "U1", "channel_id": "C1",
                         "response_url": bot.fake.response_url()})
    assert response.status_code == 200 and "/sanad" in response.json()["text"]


def test_refusal_is_plain_without_sources(bot: Bot) -> None:
    bot.event(mention(Q_NOT_IN_SEEDS, ts="1700000009.000100"))
    bot.fake.wait_for(answered(1))
    bot.drain()
    (reply,) = final(bot.fake)
    assert "لا تتضمن المقالات المتاحة" in reply["text"]
    assert not doc_ids(reply) and "المصادر" not in blocks_text(reply)


def test_feedback_click_is_stored_and_exported(bot: Bot) -> None:
    bot.event(mention(Q_WHO, ts="1700000010.000100"))
    bot.fake.wait_for(answered(1))
    bot.drain()
    reply = final(bot.fake)[0]
    payload: dict[str, Any] = {"type": "block_actions", "team": {"id": TEAM_ID}, "user": {"id": "U7", "name": "rater"},
               "channel": {"id": "C1"}, "container": {"type": "message", "message_ts": reply["ts"],
                                                        "channel_id": "C1"},
               "trigger_id": "t2", "response_url": bot.fake.response_url("click"),
               "actions": [{"type": "button", "action_id": "sanad_feedback_up", "block_id": "sanad_feedback",
                            "value": button_value(reply), "action_ts": "1700000010.5"}]}
    response = bot.form({"payload": json.dumps(payload)})
    assert response.status_code == 200
    bot.fake.wait_for(lambda f: len(f.calls_of("response_url")) >= 1)
    bot.drain()
    thanks = bot.fake.calls_of("response_url")[0]
    assert thanks["response_type"] == "ephemeral" and thanks["replace_original"] is False

    out = io.StringIO()
    assert export_feedback(bot.settings, out) == 1
    (line,) = [json.loads(x) for x in out.getvalue().splitlines()]
    assert line["question"] == Q_WHO and line["rating"] == "up" and line["user"] == "U7"
    assert line["ts"] == reply["ts"] and line["channel"] == "C1"
    assert CAIRO_MEETING in line["citations"] and "[1]" in line["answer"]
    gold = GoldItem.model_validate(line["gold"])  # a ready gold item (facts to be filled by a person)
    assert gold.answerable and CAIRO_MEETING in gold.sources and gold.facts == [] and gold.lang == "ar"

    # A second click by the same user changes the rating; an unknown answer id stores nothing.
    payload["actions"][0] = {**payload["actions"][0], "action_id": "sanad_feedback_down"}
    bot.form({"payload": json.dumps(payload)})
    payload["actions"][0] = {**payload["actions"][0], "value": "no-such-answer"}
    bot.form({"payload": json.dumps(payload)})
    bot.drain()
    out = io.StringIO()
    assert export_feedback(bot.settings, out) == 1
    assert json.loads(out.getvalue())["rating"] == "down"

    # `sanad feedback export --out FILE` writes the same lines (wired as in sanad/cli.py).
    cli = typer.Typer()
    cli.add_typer(feedback_app, name="feedback")
    target = bot.settings.data_dir / "exports" / "feedback.jsonl"
    result = CliRunner().invoke(cli, ["feedback", "export", "--out", str(target), "--data-dir",
                                      str(bot.settings.data_dir)])
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["rating"] for x in target.read_text(encoding="utf-8").splitlines()] == ["down"]


def test_export_without_any_feedback_is_empty(tmp_path: Path) -> None:
    out = io.StringIO()
    assert export_feedback(Settings.in_memory(tmp_path), out) == 0 and out.getvalue() == ""


def test_mentions_in_articles_are_neutralised(bot: Bot) -> None:
    bot.event(mention(Q_OLIVES, ts="1700000011.000100"))
    bot.fake.wait_for(answered(1))
    bot.drain()
    (reply,) = final(bot.fake)
    assert NOISY.id in doc_ids(reply)
    for message in outbound(bot.fake):
        sent = message.get("text", "") + blocks_text(message)
        for active in ACTIVE:
            assert active not in sent, (active, sent)
        for word in ("@channel", "@here", "@everyone"):
            assert word not in sent
    sent = reply["text"] + blocks_text(reply)
    assert f"@{ZWJ}channel" in sent and "&lt;!here&gt;" in sent and "&lt;@U12345&gt;" in sent


def test_url_verification_challenge(bot: Bot) -> None:
    body = json.dumps({"token": "x", "challenge": "abc123", "type": "url_verification"}).encode()
    response = bot.post(body)
    assert response.status_code == 200 and "abc123" in response.text


def test_slack_events_work_when_api_keys_are_set(tmp_path: Path, fake_slack: FakeSlack, slack_engine: Sanad) -> None:
    fake_slack.reset()
    settings = slack_settings(tmp_path, fake_slack.base_url).model_copy(update={"api_keys": "k1"})
    app = create_app(settings, engine=slack_engine)
    mount_slack(app, settings, slack_engine, None)
    with TestClient(app) as client:
        assert client.get("/v1/documents").status_code == 401  # the API wants a key, Slack's endpoint does not
        body = json.dumps({"token": "x", "challenge": "abc123", "type": "url_verification"}).encode()
        response = client.post("/slack/events", content=body, headers={"Content-Type": "application/json",
                                                                          **sign(body)})
        assert response.status_code == 200


# -- configuration ------------------------------------------------------------------------------------

def test_without_tokens_nothing_is_mounted(tmp_path: Path, slack_engine: Sanad) -> None:
    settings = Settings.in_memory(tmp_path)
    app = create_app(settings, engine=slack_engine)
    mount_slack(app, settings, slack_engine, None)
    assert "/slack/events" not in [getattr(r, "path", None) for r in app.routes]
    assert not hasattr(app.state, "slack")


def test_socket_mode_connects_on_startup_and_closes_on_shutdown(tmp_path: Path, slack_engine: Sanad,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    class FakeHandler:
        def __init__(self, app: Any, app_token: str) -> None:
            seen.append(f"init:{app_token}")

        async def connect_async(self) -> None:
            seen.append("connect")

        async def close_async(self) -> None:
            seen.append("close")

    import slack_bolt.adapter.socket_mode.async_handler as socket_handler

    monkeypatch.setattr(socket_handler, "AsyncSocketModeHandler", FakeHandler)
    settings = Settings.in_memory(tmp_path, slack=SlackSettings(bot_token=SecretStr("xoxb-test"),
                                                                app_token=SecretStr("xapp-test")))
    app = create_app(settings, engine=slack_engine)
    mount_slack(app, settings, slack_engine, None)
    assert "/slack/events" not in [getattr(r, "path", None) for r in app.routes]  # no public endpoint
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert seen == ["init:xapp-test", "connect"]
    assert seen[-1] == "close"


# -- formatting -------------------------------------------------------------------------------------------

def test_neutralize_and_clean_question() -> None:
    assert neutralize("a & b <!here> <@U1> @channel @Here") == (
        f"a &amp; b &lt;!here&gt; &lt;@U1&gt; @{ZWJ}channel @{ZWJ}Here")
    text = f"<@{BOT_USER_ID}> what about <#C1|general> &amp; <https://x.test|this> <!here> <@U2>?"
    assert clean_question(text, BOT_USER_ID) == "what about #general & this ?"


def test_long_answers_are_split_within_limits_never_mid_word() -> None:
    words = [f"كلمة{i}" for i in range(4000)]
    text = " ".join(w + ("." if i % 17 == 16 else "") for i, w in enumerate(words)) + " & <!here>"
    pieces = split_text(neutralize(text), SECTION_LIMIT)
    assert all(len(p) <= SECTION_LIMIT for p in pieces) and len(pieces) > 10
    assert " ".join(pieces).split() == neutralize(text).split()  # nothing lost, no word cut
    citations = [Citation(n=i, doc_id=f"doc-{i}", title="عنوان " * 80, chunk_id=f"c{i}", text="نص",
                          quote="جملة " * 200,
                          start=0, end=1) for i in range(1, 80)]
    answer = Answer(answer=text, language="ar", answerable=True, citations=citations)
    messages = render_answer(answer, "a" * 32)
    assert len(messages) > 1
    for m in messages:
        assert len(m.blocks) <= MAX_BLOCKS and len(m.text) <= TEXT_LIMIT
        for b in m.blocks:
            if b["type"] == "section":
                assert len(b["text"]["text"]) <= SECTION_LIMIT
            if b["type"] == "context":
                assert all(len(e["text"]) <= SECTION_LIMIT for e in b["elements"])
    sections = [b["text"]["text"] for m in messages for b in m.blocks if b["type"] == "section"]
    assert " ".join(sections).split() == neutralize(text).split()
    assert [b["type"] for b in messages[-1].blocks][-1] == "actions"
    assert sum(b["type"] == "actions" for m in messages for b in m.blocks) == 1
    cited = [e["text"] for m in messages for b in m.blocks if b["type"] == "context" for e in b["elements"]]
    assert sum("`doc-" in c for c in cited) == 79


def test_split_hard_cuts_only_an_overlong_word_and_keeps_entities_whole() -> None:
    word = "&" * 5000
    pieces = split_text(neutralize(word), SECTION_LIMIT)
    assert all(len(p) <= SECTION_LIMIT for p in pieces)
    assert all(p.startswith("&amp;") and p.endswith("&amp;") for p in pieces)
    assert "".join(pieces) == neutralize(word)


def test_manifest_matches_the_bot() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((Path(__file__).resolve().parents[1] / "slack" / "manifest.yaml").read_text("utf-8"))
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "im:history", "im:read", "im:write", "reactions:write",
            "commands"} <= scopes
    settings = manifest["settings"]
    assert set(settings["event_subscriptions"]["bot_events"]) == {"app_mention", "message.im"}
    assert settings["interactivity"]["is_enabled"] is True
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/sanad"
    urls = [settings["event_subscriptions"]["request_url"], settings["interactivity"]["request_url"], command["url"]]
    assert all(u == "https://YOUR-HOST/slack/events" for u in urls)
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
