"""The chat page (service/static/index.html) in a real headless browser.

Drives Debian's chromium through Playwright against the real FastAPI service,
served by uvicorn on 127.0.0.1 with the seed articles indexed in memory.
Playwright comes with the ``dev`` extra; chromium with ``scripts/install-browser.sh``
(which also installs Playwright). Skipped, with the reason, when either is missing.

Screenshots go to ``artifacts/web-chat*.png``.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts"
QUESTION = "من شارك في الاجتماع الأمني الذي استضافته القاهرة؟"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 15_000

HAS_PLAYWRIGHT = importlib.util.find_spec("playwright") is not None

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} not found: run scripts/install-browser.sh to enable the browser test",
    ),
    pytest.mark.skipif(
        not HAS_PLAYWRIGHT,
        reason="the playwright package is not installed: pip install -e '.[dev]' (or run "
               "scripts/install-browser.sh) to enable the browser test",
    ),
]


# -- fixtures -------------------------------------------------------------------

@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real service with the seeds indexed, on a free port of 127.0.0.1."""
    import uvicorn

    from index.ingest import Indexer
    from rag.engine import Sanad
    from rag.settings import LLMSettings, Settings
    from service.app import create_app

    # Explicit overrides beat SANAD_* variables and .env: offline answerer, open API.
    settings = Settings.in_memory(tmp_path_factory.mktemp("web"), llm=LLMSettings(), api_keys="")
    engine = Sanad.open(settings)
    summary = Indexer(engine.store, engine.encoder, engine.embedder, settings.index).index_paths([ROOT / "seeds"])
    assert summary.documents > 0, "no seed articles indexed"
    app = create_app(settings, engine=engine)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn exited during startup"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        engine.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Imported here so the module still collects (and skips) on machines without Playwright.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, base_url: str) -> Iterator[Any]:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                                  base_url=base_url, locale="ar")
    p = context.new_page()
    p.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    # The browser logs every non-2xx response as "Failed to load resource"; the error tests cause some.
    p.on("console", lambda msg: errors.append(msg.text)
         if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    try:
        yield p
        assert not errors, f"page reported errors: {errors}"
    finally:
        context.close()


# -- helpers --------------------------------------------------------------------

def sse_events(body: bytes) -> list[tuple[str, Any]]:
    """Parse a complete ``text/event-stream`` body into (event, data) pairs."""
    events = []
    for block in body.decode("utf-8").replace("\r\n", "\n").split("\n\n"):
        kind, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data or kind != "message":
            raw = "\n".join(data)
            events.append((kind, json.loads(raw) if raw else None))
    return events


def is_chat(response: Any) -> bool:
    return response.url.endswith("/v1/chat") and response.request.method == "POST"


def last_assistant(page: Any) -> Any:
    return page.locator('#messages > li[data-role="assistant"]').last


def wait_answered(page: Any) -> Any:
    """The last assistant message, once its final answer has been rendered."""
    msg = last_assistant(page)
    msg.and_(page.locator('[data-state="done"]')).wait_for(state="attached")
    return msg


# -- tests ----------------------------------------------------------------------

def test_chat_page_answers_with_citations(page: Any, base_url: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    response = page.goto("/")
    assert response is not None and response.ok
    assert page.locator('meta[name="viewport"]').get_attribute("content").startswith("width=device-width")
    assert page.locator("#messages > li").count() == 0

    # Ask in Arabic with the send button; keep the raw SSE the page consumed.
    page.fill("#question", QUESTION)
    with page.expect_response(is_chat) as info:
        page.click("#send")
    request_body = info.value.request.post_data_json
    assert request_body == {"question": QUESTION, "session_id": None, "stream": True}
    assert info.value.status == 200
    assert info.value.headers["content-type"].startswith("text/event-stream")

    msg = wait_answered(page)
    events = sse_events(info.value.body())
    kinds = [k for k, _ in events]
    assert kinds[0] == "passages" and "delta" in kinds and kinds[-2:] == ["answer", "done"], kinds
    answer = dict(events)["answer"]
    assert answer["answerable"] and answer["language"] == "ar" and answer["citations"]
    first = answer["citations"][0]
    assert first["n"] == 1

    # The answer bubble: right-to-left Arabic, the full answer text, [1] marker as a button.
    user = page.locator('#messages > li[data-role="user"] .bubble').first
    assert user.get_attribute("dir") == "rtl" and user.text_content() == QUESTION
    bubble = msg.locator('[data-testid="answer"]')
    assert bubble.get_attribute("dir") == "rtl"
    assert bubble.get_attribute("lang") == "ar"
    text = bubble.text_content() or ""
    assert text.strip() and "[1]" in text
    assert text == answer["answer"]
    assert msg.locator(".sources .source").count() == len(answer["citations"])
    page.screenshot(path=str(ARTIFACTS / "web-chat.png"))

    # No horizontal overflow at phone widths.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.set_viewport_size({"width": 375, "height": 667})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.set_viewport_size(PHONE)

    # Clicking [1] opens the citation panel with the title, doc id and highlighted quote.
    marker = bubble.locator('.cite[data-n="1"]').first
    assert marker.text_content() == "[1]"
    marker.click()
    panel = page.locator('[data-testid="citation-panel"]')
    panel.wait_for(state="visible")
    assert panel.locator("#panel-title").text_content() == first["title"]
    assert panel.locator("#panel-doc").text_content() == first["doc_id"]
    mark = panel.locator('mark[data-testid="quote"]')
    assert mark.is_visible()
    assert " ".join((mark.text_content() or "").split()) == " ".join(first["quote"].split())
    if first["quote"] in first["text"]:
        # Highlighted within the passage: the passage shows the whole chunk text.
        assert panel.locator("#panel-passage").text_content() == first["text"]
    page.screenshot(path=str(ARTIFACTS / "web-chat-citation.png"))

    page.set_viewport_size(DESKTOP)
    assert panel.is_visible()
    page.screenshot(path=str(ARTIFACTS / "web-chat-desktop.png"))

    page.keyboard.press("Escape")
    panel.wait_for(state="hidden")

    # A follow-up in the same conversation carries the session id.
    session_id = answer.get("session_id")
    if session_id:
        page.fill("#question", "ومتى عقد الاجتماع؟")
        with page.expect_response(is_chat) as info2:
            page.press("#question", "Enter")
        assert info2.value.request.post_data_json["session_id"] == session_id
        page.locator('#messages > li[data-role="assistant"]').nth(1).and_(
            page.locator('[data-state="done"]')).wait_for(state="attached")

    # "New conversation" clears the list and forgets the session.
    page.click("#new-chat")
    assert page.locator("#messages > li").count() == 0
    assert page.locator("#welcome").is_visible()
    assert not panel.is_visible()
    page.set_viewport_size({"width": 375, "height": 667})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375

    # English question, sent with Enter: a fresh session and a left-to-right answer.
    page.fill("#question", "Who took part in the security meeting hosted by Cairo?")
    with page.expect_response(is_chat) as info3:
        page.press("#question", "Enter")
    assert info3.value.request.post_data_json["session_id"] is None
    msg = wait_answered(page)
    english = dict(sse_events(info3.value.body()))["answer"]
    assert english["language"] == "en"
    assert msg.locator('[data-testid="answer"]').get_attribute("dir") == "ltr"
    if not english["answerable"]:
        assert msg.locator(".source, .cite").count() == 0


def _sse(*events: tuple[str, Any]) -> str:
    return "".join(f"event: {k}\ndata: {json.dumps(v, ensure_ascii=False)}\n\n" for k, v in events)


def test_chat_page_escapes_text_and_shows_states(page: Any) -> None:
    """Untrusted text stays text; refusal, degraded, reset, errors and the API-key flow (mocked API)."""
    hostile = '<img src=x onerror="window.__xss=1"><b>bold</b>'
    cite = {"n": 1, "doc_id": "doc<1>", "title": f"Title {hostile}", "chunk_id": "c1",
            "text": f"Before. The quote {hostile} here. After.", "quote": f"The quote {hostile} here.",
            "start": 8, "end": 60}
    calls: list[dict[str, Any]] = []

    def handler(route: Any) -> None:
        req = route.request
        body = req.post_data_json
        calls.append({"body": body, "auth": req.headers.get("authorization")})
        q = body["question"]
        if q == "key":
            if req.headers.get("authorization") != "Bearer s3cret":
                route.fulfill(status=401, content_type="application/json",
                              body=json.dumps({"error": {"code": "unauthorized", "message": "API key required"}}))
                return
            q = "refuse"
        if q == "gone":
            route.fulfill(status=404, content_type="application/json", body=json.dumps(
                {"error": {"code": "session_not_found", "message": "No conversation with id 's1'."}}))
        elif q == "boom":
            route.fulfill(status=429, content_type="application/json",
                          body=json.dumps({"error": {"code": "rate_limited", "message": "Too many requests"}}))
        elif q == "refuse":
            text = "I could not find an answer in the articles."
            route.fulfill(status=200, content_type="text/event-stream", body=_sse(
                ("passages", []), ("delta", {"text": text}),
                ("answer", {"answer": text, "language": "en", "answerable": False, "citations": [],
                            "session_id": "s1", "rewritten_question": None, "degraded": False,
                            "answerer": "extractive"}),
                ("done", None)))
        else:
            final = f"Answer {hostile} [1] and [9]"
            route.fulfill(status=200, content_type="text/event-stream", body=_sse(
                ("passages", [cite]), ("delta", {"text": "discarded draft [1]"}), ("reset", {}),
                ("delta", {"text": "Answer "}), ("delta", {"text": f"{hostile} [1]"}),
                ("answer", {"answer": final, "language": "en", "answerable": True, "citations": [cite],
                            "session_id": "s1", "rewritten_question": None, "degraded": True,
                            "answerer": "extractive"}),
                ("done", None)))

    page.route("**/v1/chat", handler)
    page.goto("/")
    page.evaluate("localStorage.clear()")

    # Hostile markup everywhere stays literal text; degraded note shown; unknown [9] stays text.
    page.fill("#question", "html please")
    page.press("#question", "Enter")
    msg = wait_answered(page)
    bubble = msg.locator('[data-testid="answer"]')
    assert bubble.text_content() == f"Answer {hostile} [1] and [9]"
    assert bubble.get_attribute("dir") == "ltr"
    assert bubble.locator(".cite").count() == 1
    assert msg.locator('[data-testid="degraded"]').is_visible()
    bubble.locator('.cite[data-n="1"]').click()
    panel = page.locator('[data-testid="citation-panel"]')
    panel.wait_for(state="visible")
    assert panel.locator("#panel-title").text_content() == cite["title"]
    assert panel.locator("#panel-doc").text_content() == "doc<1>"
    assert panel.locator('mark[data-testid="quote"]').text_content() == cite["quote"]
    assert page.locator("img, b").count() == 0
    assert page.evaluate("window.__xss") is None
    page.click("#panel-close")
    panel.wait_for(state="hidden")

    # A refusal is plain: no markers, no sources; the session id is carried forward.
    page.fill("#question", "refuse")
    page.press("#question", "Enter")
    page.locator('#messages > li[data-role="assistant"][data-answerable="false"]').wait_for()
    refusal = last_assistant(page)
    assert refusal.locator(".cite, .source").count() == 0
    assert calls[-1]["body"]["session_id"] == "s1"

    # A non-200 error shows the server's message.
    page.fill("#question", "boom")
    page.press("#question", "Enter")
    page.locator('#messages > li[data-role="error"]', has_text="Too many requests").wait_for()
    assert calls[-1]["body"]["session_id"] == "s1"

    # An unknown session: its message is shown and the next question starts a new conversation.
    page.fill("#question", "gone")
    page.press("#question", "Enter")
    page.locator('#messages > li[data-role="error"]', has_text="No conversation with id").wait_for()

    # 401: the key field appears; saving the key retries with a bearer token and stores it.
    page.fill("#question", "key")
    page.press("#question", "Enter")
    page.locator('[data-testid="keybar"]').wait_for(state="visible")
    page.locator('#messages > li[data-role="error"]', has_text="API key required").wait_for()
    page.fill("#api-key", "s3cret")
    page.press("#api-key", "Enter")
    page.locator('[data-testid="keybar"]').wait_for(state="hidden")
    page.locator('#messages > li[data-role="assistant"][data-answerable="false"]').nth(1).wait_for()
    assert calls[-1]["auth"] == "Bearer s3cret"
    assert calls[-1]["body"]["session_id"] is None
    assert page.evaluate("localStorage.getItem('sanad.apiKey')") == "s3cret"
    assert page.locator('#messages > li[data-role="error"]', has_text="API key required").count() == 0

    # "New conversation" while an answer is still streaming drops it without leftovers.
    page.evaluate("""() => {
        window.fetch = async () => new Response(new ReadableStream({ start(c) {
            const sse = 'event: passages\\ndata: []\\n\\nevent: delta\\ndata: {"text": "partial"}\\n\\n';
            c.enqueue(new TextEncoder().encode(sse));
        } }), { headers: { "content-type": "text/event-stream" } });
    }""")
    page.fill("#question", "never ends")
    page.press("#question", "Enter")
    page.locator('#messages > li[data-state="streaming"]', has_text="partial").wait_for()
    assert page.locator("#send").is_disabled()
    page.click("#new-chat")
    page.wait_for_timeout(200)
    assert page.locator("#messages > li").count() == 0
    page.fill("#question", "next")
    assert page.locator("#send").is_enabled()


@pytest.mark.parametrize("path, ready", [("/docs", ".swagger-ui .info .title"), ("/redoc", "redoc-wrap, .redoc-wrap")])
def test_api_docs_render_offline_from_the_app_alone(browser: Any, base_url: str, path: str, ready: str) -> None:
    """Swagger UI and ReDoc come from the app (fastapi-offline), not a CDN: everything the page loads comes from
    127.0.0.1 (ReDoc's remote footer logo is refused by the page's Content-Security-Policy, so it is never
    loaded), and the page renders the API's title."""
    context = browser.new_context(base_url=base_url)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    hosts: list[str] = []
    page.on("response", lambda r: hosts.append(r.url.split("/")[2] if "://" in r.url else r.url))
    # This machine has no internet, so a remote fetch would fail anyway: what matters is that none is tried,
    # or that the page's policy refuses it before it leaves the browser.
    remote: list[str] = []
    page.on("request", lambda r: remote.append(r.url) if "://127.0.0.1:" not in r.url and "://" in r.url else None)
    refused: list[str] = []  # Chromium reports a fetch refused by the Content-Security-Policy as failing with "csp"
    page.on("requestfailed", lambda r: refused.append(r.url) if "csp" in (r.failure or "").lower() else None)
    try:
        page.goto(path)
        page.wait_for_selector(ready)
        assert "Sanad" in page.content()
        page.screenshot(path=str(ARTIFACTS / f"docs{path.replace('/', '-')}.png"))
    finally:
        context.close()
    assert hosts and all(h.startswith("127.0.0.1:") for h in hosts if not h.startswith(("data:", "blob:"))), hosts
    assert sorted(remote) == sorted(refused), (remote, refused)
