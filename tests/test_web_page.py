"""The chat page (service/static/index.html) in a real headless browser.

Drives Debian's chromium through Playwright against the real FastAPI service,
served by uvicorn on 127.0.0.1 with the seed articles indexed in memory.
Playwright comes with the ``dev`` extra; chromium with ``scripts/install-browser.sh``
(which also installs Playwright). Skipped, with the reason, when either is missing.

Screenshots go to ``artifacts/web-chat*.png``; the mixed-direction answer (English quoting Arabic) also to
``/tmp/sanad-mixed-direction.png``.
"""

from __future__ import annotations

import importlib.util
import json
import re
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

    from index.ingest import Indexer
    from rag.engine import Sanad
    from rag.settings import LLMSettings, Settings
    from service.app import create_app
    from tests.servers import serve

    # Explicit overrides beat SANAD_* variables and .env: offline answerer, open API.
    settings = Settings.in_memory(tmp_path_factory.mktemp("web"), llm=LLMSettings(), api_keys="")
    engine = Sanad.open(settings)
    summary = Indexer(engine.store, engine.encoder, engine.embedder, settings.index).index_paths([ROOT / "seeds"])
    assert summary.documents > 0, "no seed articles indexed"
    app = create_app(settings, engine=engine)

    try:
        with serve(app, lifespan="on", name="sanad-web") as url:
            yield url
    finally:
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


def is_chat_request(request: Any) -> bool:
    return request.url.endswith("/v1/chat") and request.method == "POST"


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


# -- mixed direction and citation metadata ------------------------------------------

QUOTED = re.compile(r"«[^«»]*»")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIXED_SCREENSHOT = Path("/tmp/sanad-mixed-direction.png")

# Where the quotes of an English answer and what follows each are drawn (CSS pixels). Each Arabic quote is an
# inline <bdi> in a right-to-left block of its own (``data-testid="answer-quote-block"``); for each block:
# ``lines`` are the quote's boxes merged per line, top to bottom (a line may hold several bidi runs of it),
# ``close``/``open`` the rects of its closing » and opening «, ``after`` the first visible character after the
# quote (e.g. "."), ``marker`` its first [n]. ``lead`` is the text before the first block.
QUOTE_GEOMETRY_JS = """(bubble) => {
    const box = (r) => ({ left: r.left, right: r.right, top: r.top, bottom: r.bottom });
    const charRect = (node, i) => {
        const range = document.createRange();
        range.setStart(node, i);
        range.setEnd(node, i + 1);
        return box(range.getBoundingClientRect());
    };
    const blocks = Array.from(bubble.querySelectorAll('[data-testid="answer-quote-block"]'));
    const lead = document.createRange();
    lead.setStart(bubble, 0);
    if (blocks.length) lead.setEndBefore(blocks[0]);
    return {
        bubble: box(bubble.getBoundingClientRect()),
        lead: blocks.length ? box(lead.getBoundingClientRect()) : null,
        blocks: blocks.map((b) => {
            const q = b.querySelector("bdi");
            const lines = [];
            for (const r of Array.from(q.getClientRects()).filter((r) => r.width > 0).map(box)) {
                const l = lines.find((l) => r.top < l.bottom && l.top < r.bottom);
                if (!l) { lines.push(r); continue; }
                l.left = Math.min(l.left, r.left); l.right = Math.max(l.right, r.right);
                l.top = Math.min(l.top, r.top); l.bottom = Math.max(l.bottom, r.bottom);
            }
            lines.sort((a, b) => a.top - b.top);
            const first = q.firstChild, last = q.lastChild;
            // the text right after the quote, if any (e.g. ". " or " "): first in the unbreakable tail with the [n]
            const tail = q.nextSibling;
            const after = tail && tail.nodeType === Node.ELEMENT_NODE && tail.classList.contains("qt")
                ? tail.firstChild : tail;
            const marker = b.querySelector(".cite");
            return {
                block: box(b.getBoundingClientRect()),
                dir: b.getAttribute("dir"),
                lang: b.getAttribute("lang"),
                direction: getComputedStyle(b).direction,
                quote: q.textContent,
                markers: Array.from(b.querySelectorAll(".cite")).map((c) => c.textContent),
                lines,
                open: charRect(first, 0),
                close: charRect(last, last.textContent.length - 1),
                afterText: after && after.nodeType === Node.TEXT_NODE ? after.textContent : null,
                after: after && after.nodeType === Node.TEXT_NODE && after.textContent.trim()
                    ? charRect(after, after.textContent.search(/\\S/)) : null,
                marker: marker ? { n: marker.dataset.n, ...box(marker.getBoundingClientRect()) } : null,
            };
        }),
    };
}"""

# Every text node holding a guillemet lies inside a direction-isolated element (a <bdi> or dir=auto).
UNISOLATED_MARKS_JS = """(bubble) => {
    const out = [];
    const walker = document.createTreeWalker(bubble, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        if (!/[«»]/.test(n.textContent)) continue;
        const iso = n.parentElement.closest('bdi, [dir="auto"]');
        if (!iso || iso === bubble || !bubble.contains(iso)) out.push(n.textContent);
    }
    return out;
}"""


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 100 and data.startswith(PNG_SIGNATURE), path
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 0 and height > 0, (width, height)


def inside(inner: dict[str, float], outer: dict[str, float], slack: float = 1.0) -> bool:
    return (inner["left"] >= outer["left"] - slack and inner["right"] <= outer["right"] + slack
            and inner["top"] >= outer["top"] - slack and inner["bottom"] <= outer["bottom"] + slack)


def same_line(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["top"] < b["bottom"] and b["top"] < a["bottom"]


def ask(page: Any, question: str) -> tuple[Any, dict[str, Any]]:
    """Ask on the page with Enter; the rendered assistant message and the final answer object it got."""
    page.fill("#question", question)
    with page.expect_response(is_chat) as info:
        page.press("#question", "Enter")
    assert info.value.status == 200, info.value.text()
    msg = wait_answered(page)
    return msg, dict(sse_events(info.value.body()))["answer"]


def test_mixed_direction_answer_isolates_quotes(page: Any, tmp_path: Path) -> None:
    """An English answer quoting Arabic: the answer is left-to-right by its language, each «…» is its own
    direction-isolated <bdi> in a right-to-left block of its own (dir=rtl lang=ar) with its [n] beside it, the
    closing » next to the quote's last word."""
    page.set_viewport_size(DESKTOP)
    page.goto("/")
    msg, answer = ask(page, "Who attended the security meeting in Cairo?")
    assert answer["answerable"] and answer["language"] == "en" and answer["citations"], answer
    quotes = QUOTED.findall(answer["answer"])
    assert quotes, answer["answer"]

    bubble = msg.locator('[data-testid="answer"]')
    assert bubble.get_attribute("dir") == "ltr" and bubble.get_attribute("lang") == "en"
    assert bubble.evaluate("b => getComputedStyle(b).direction") == "ltr"
    assert bubble.text_content() == answer["answer"]  # wrapping changed no text
    isolated = bubble.locator("bdi")
    assert isolated.all_text_contents() == quotes
    assert bubble.evaluate(UNISOLATED_MARKS_JS) == []
    for i in range(isolated.count()):  # Arabic quotes read right to left inside the English answer
        assert isolated.nth(i).evaluate("q => getComputedStyle(q).direction") == "rtl"

    # The [n] markers still are buttons, outside the quotes, and open their citation.
    markers = bubble.locator(".cite")
    assert markers.count() == len(re.findall(r"\[\d+\]", answer["answer"]))
    assert isolated.locator(".cite").count() == 0
    markers.first.click()
    panel = page.locator('[data-testid="citation-panel"]')
    panel.wait_for(state="visible")
    assert panel.locator("#panel-title").text_content() == answer["citations"][0]["title"]
    assert panel.locator('mark[data-testid="quote"]').get_attribute("dir") == "auto"
    page.keyboard.press("Escape")
    panel.wait_for(state="hidden")

    # The seed articles have no outlet, date or link: nothing extra, no "undefined", no stray separators.
    sources = msg.locator(".sources")
    assert sources.locator(".src").count() == len(answer["citations"])
    assert sources.locator(".info, a, .sep").count() == 0
    assert "undefined" not in (sources.text_content() or "") and "null" not in (sources.text_content() or "")

    # Each quote is a right-to-left block of its own under the English lead sentence, its [n] beside it on its
    # last line: the next quote starts below, never to the right of the last one's tail (wrapped in one
    # left-to-right paragraph, a quote's tail sat left of its [1] and the next quote started right of it).
    g = bubble.evaluate(QUOTE_GEOMETRY_JS)
    blocks = g["blocks"]
    assert [b["quote"] for b in blocks] == quotes, g
    want = [re.findall(r"\[\d+\]", m) for m in re.findall(r"«[^«»]*»[.\s]*((?:\[\d+\]\s*)*)", answer["answer"])]
    assert [b["markers"] for b in blocks] == want and all(want), g
    assert g["lead"]["bottom"] <= blocks[0]["block"]["top"] + 1, g
    for b in blocks:
        assert (b["dir"], b["lang"], b["direction"]) == ("rtl", "ar", "rtl"), b
        first, last = b["lines"][0], b["lines"][-1]
        assert inside(b["block"], g["bubble"]) and all(inside(r, b["block"]) for r in b["lines"]), b
        # The opening « at the right end of the quote's first line, which starts at the block's right edge; the
        # closing » at the left end of its last line (the space a line breaks at may stay in the box there).
        assert b["block"]["right"] - first["right"] <= 2, b
        assert inside(b["open"], first) and first["right"] - b["open"]["right"] <= 8, b
        assert inside(b["close"], last) and b["close"]["left"] - last["left"] <= 2, b
        marker = b["marker"]  # its [n] on that last line, on the left of the closing » (right to left)
        assert same_line(marker, last) and marker["right"] <= b["close"]["left"] + 1, b
        assert inside(marker, b["block"]), b
    for prev, nxt in zip(blocks, blocks[1:], strict=False):
        assert nxt["block"]["top"] >= prev["block"]["bottom"] - 1, g
        assert nxt["open"]["top"] >= prev["marker"]["bottom"] - 1, g

    shot = tmp_path / "mixed-direction.png"
    msg.screenshot(path=str(shot))
    assert_png(shot)
    page.screenshot(path=str(MIXED_SCREENSHOT))
    assert_png(MIXED_SCREENSHOT)

    # The Arabic question: the answer is right to left by its language.
    msg, answer = ask(page, QUESTION)
    assert answer["language"] == "ar"
    bubble = msg.locator('[data-testid="answer"]')
    assert bubble.get_attribute("dir") == "rtl" and bubble.get_attribute("lang") == "ar"
    assert bubble.evaluate("b => getComputedStyle(b).direction") == "rtl"
    assert bubble.locator("bdi").all_text_contents() == QUOTED.findall(answer["answer"])
    assert bubble.evaluate(UNISOLATED_MARKS_JS) == []


def test_citation_shows_article_outlet_date_and_link(page: Any) -> None:
    """Articles indexed through the API with an outlet, a date and a link: the cited source shows them, the link
    opens the article in a new tab without an opener; a javascript: address never becomes a link."""
    good = {"id": "web-meta-alexandria", "title": "Port of Alexandria opens new grain terminal",
            "text": "Port of Alexandria opens new grain terminal\nThe Port of Alexandria opened a new grain terminal "
                    "on Wednesday. The terminal can store 300,000 tonnes of wheat.",
            "date": "2025-12-03", "source": "Al-Ahram Weekly", "url": "https://example.com/news/grain?id=7&lang=en"}
    bad = {"id": "web-meta-suez", "title": "Suez lighthouse repainted",
           "text": "Suez lighthouse repainted\nThe old Suez lighthouse was repainted bright red on Thursday "
                   "by the harbour workers.",
           "date": "2025-12-04", "source": "Harbour Gazette", "url": "javascript:alert(1)"}
    page.goto("/")
    added: list[str] = []
    try:
        r = page.request.post("/v1/documents", data=good)
        assert r.status == 201, r.text()
        added.append(good["id"])
        r = page.request.post("/v1/documents", data=bad)
        # The API may keep such an address as data or refuse it; either way the page must never link it.
        assert r.status in (201, 422), r.text()
        if r.status == 201:
            added.append(bad["id"])

        msg, answer = ask(page, "How much wheat can the new grain terminal in Alexandria store?")
        cited = [c for c in answer["citations"] if c["doc_id"] == good["id"]]
        assert cited, answer
        c = cited[0]
        assert (c["source"], c["date"], c["url"]) == (good["source"], good["date"], good["url"])
        item = msg.locator(f'.sources .src[data-n="{c["n"]}"]')
        assert item.locator('[data-testid="source-outlet"]').text_content() == good["source"]
        date = item.locator('[data-testid="source-date"]')
        assert date.text_content() == good["date"] and date.get_attribute("datetime") == good["date"]
        link = item.locator("a")
        assert link.count() == 1
        assert link.get_attribute("href") == good["url"]
        assert link.get_attribute("target") == "_blank"
        assert set((link.get_attribute("rel") or "").split()) == {"noopener", "noreferrer"}
        assert "example.com" in (link.text_content() or "")
        assert item.locator(".sep").count() == 2
        assert "undefined" not in (item.text_content() or "")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

        # The citation panel shows them too.
        item.locator(".source").click()
        panel = page.locator('[data-testid="citation-panel"]')
        panel.wait_for(state="visible")
        info = panel.locator('[data-testid="panel-info"]')
        assert info.locator('[data-testid="source-outlet"]').text_content() == good["source"]
        assert info.locator("a").get_attribute("href") == good["url"]
        page.keyboard.press("Escape")
        panel.wait_for(state="hidden")

        if bad["id"] in added:
            msg, answer = ask(page, "What colour was the Suez lighthouse repainted?")
            cited = [c for c in answer["citations"] if c["doc_id"] == bad["id"]]
            assert cited, answer
            item = msg.locator(f'.sources .src[data-n="{cited[0]["n"]}"]')
            assert item.locator('[data-testid="source-outlet"]').text_content() == bad["source"]
            assert item.locator('[data-testid="source-date"]').text_content() == bad["date"]
            assert item.locator("a").count() == 0 and item.locator(".sep").count() == 1
            assert page.locator('a[href^="javascript:" i]').count() == 0
    finally:
        for doc_id in added:
            page.request.delete(f"/v1/documents/{doc_id}")


def test_a_syndicated_story_shows_the_other_outlets(page: Any) -> None:
    """One wire story in two outlets: the answer quotes one copy, and its source says where else it ran."""
    wire = ("Firefighters in Jazan put out a blaze at a timber warehouse in the Al-Shati district before dawn, "
            "with no injuries reported. The civil defence spokesman said crews reached the fire within minutes of "
            "the call and brought it under control in two hours. The cause of the fire is under investigation.")
    copies = [{"id": "web-wire-spa", "title": "Warehouse fire in Jazan", "text": wire, "date": "2015-07-22",
               "source": "SPA", "url": "https://spa.example/fire"},
              {"id": "web-wire-okaz", "title": "Jazan warehouse fire put out", "text": "JAZAN: " + wire,
               "date": "2015-07-22", "source": "Okaz", "url": "https://okaz.example/fire"}]
    page.goto("/")
    try:
        for doc in copies:
            r = page.request.post("/v1/documents", data=doc)
            assert r.status == 201, r.text()
        msg, answer = ask(page, "How long did the crews take to control the warehouse fire in Jazan?")
        cited = [c for c in answer["citations"] if c["doc_id"] in {d["id"] for d in copies}]
        assert len({c["doc_id"] for c in cited}) == 1, answer  # one copy quoted, not both
        other = next(d for d in copies if d["id"] != cited[0]["doc_id"])
        item = msg.locator(f'.sources .src[data-n="{cited[0]["n"]}"] [data-testid="also-in"]')
        assert other["source"] in (item.text_content() or "")
        link = item.locator("a")
        assert link.count() == 1 and link.get_attribute("href") == other["url"]
    finally:
        for doc in copies:
            page.request.delete(f"/v1/documents/{doc['id']}")


def test_a_date_range_limits_what_is_searched(page: Any) -> None:
    """Two dated reports of one kind of event: with a date range set, the answer comes from the one inside it."""
    docs = [{"id": "web-date-july", "title": "Fire in Jeddah", "date": "2015-07-22",
             "text": "Fire in Jeddah\nA fire broke out at a timber warehouse in Jeddah and was put out in three "
                     "hours."},
            {"id": "web-date-august", "title": "Fire in Jeddah", "date": "2015-08-05",
             "text": "Fire in Jeddah\nA fire broke out at a textile warehouse in Jeddah and was put out in one hour."}]
    page.goto("/")
    try:
        for doc in docs:
            assert page.request.post("/v1/documents", data=doc).status == 201
        page.click('[data-testid="date-toggle"]')
        page.fill('[data-testid="date-from"]', "2015-08-01")
        with page.expect_request(is_chat_request) as sent:
            _, answer = ask(page, "How long did it take to put out the warehouse fire in Jeddah?")
        assert json.loads(sent.value.post_data or "{}")["filters"] == {"date_from": "2015-08-01"}
        assert {c["doc_id"] for c in answer["citations"]} == {"web-date-august"}
        assert "on" in (page.get_attribute('[data-testid="date-toggle"]', "class") or "")
        page.click('[data-testid="date-clear"]')
        with page.expect_request(is_chat_request) as sent:
            ask(page, "How long did it take to put out the timber warehouse fire in Jeddah?")
        assert "filters" not in json.loads(sent.value.post_data or "{}")
    finally:
        for doc in docs:
            page.request.delete(f"/v1/documents/{doc['id']}")


def test_citation_metadata_and_quotes_stay_safe(page: Any) -> None:
    """Mocked API: outlet/date/link shown only when present, links only for http(s), hostile text stays text,
    and the issue's example lays out in order, right to left in the quote's own block: «Arabic quote», then ".",
    then [1] (desktop width, one line)."""
    hostile = '<img src=x onerror="window.__xss=1">'
    base = {"doc_id": "d", "chunk_id": "c", "text": "استضافت القاهرة اجتماعًا أمنيًا.", "start": 0, "end": 10,
            "quote": "استضافت القاهرة اجتماعًا أمنيًا."}
    cites = [
        {**base, "n": 1, "title": "اجتماع القاهرة", "source": "Ahram", "date": "2025-11-25T08:30:00Z",
         "url": "http://ahram.example/cairo"},
        {**base, "n": 2, "title": "Only an outlet", "source": f"Outlet {hostile}"},
        {**base, "n": 3, "title": "Only a date", "date": "2025-11-26", "url": "javascript:alert(1)"},
        {**base, "n": 4, "title": "Nothing", "source": "", "date": None, "url": " JavaScript:alert(1)"},
        {**base, "n": 5, "title": "No scheme", "url": "//evil.example/x"},
        {**base, "n": 6, "title": "Data", "url": "data:text/html,<script>window.__xss=1</script>"},
    ]
    final = f"The articles (in Arabic) say: «استضافت القاهرة اجتماعًا أمنيًا». [1] Also: «{hostile}» [2][3][4][5][6]"

    def handler(route: Any) -> None:
        route.fulfill(status=200, content_type="text/event-stream", body=_sse(
            ("passages", cites), ("delta", {"text": "The articles (in Arabic) say: «استضافت القاهرة"}),
            ("delta", {"text": final[len("The articles (in Arabic) say: «استضافت القاهرة"):]}),
            ("answer", {"answer": final, "language": "en", "answerable": True, "citations": cites,
                        "session_id": "s1", "rewritten_question": None, "degraded": False,
                        "answerer": "extractive"}),
            ("done", None)))

    page.route("**/v1/chat", handler)
    page.set_viewport_size(DESKTOP)
    page.goto("/")
    page.fill("#question", "mixed")
    page.press("#question", "Enter")
    msg = wait_answered(page)
    bubble = msg.locator('[data-testid="answer"]')
    assert bubble.text_content() == final
    assert bubble.get_attribute("dir") == "ltr"
    assert bubble.locator("bdi").all_text_contents() == ["«استضافت القاهرة اجتماعًا أمنيًا»", f"«{hostile}»"]
    assert bubble.evaluate(UNISOLATED_MARKS_JS) == []
    assert bubble.locator(".cite").count() == 6
    assert page.locator("img, script:not([src])").count() == 1  # only the page's own script
    assert page.evaluate("window.__xss") is None

    # The Arabic quote is a right-to-left block of its own under "The articles (in Arabic) say:", holding its
    # "." and [1]; the Latin one stays in the English line, which goes on under the block.
    g = bubble.evaluate(QUOTE_GEOMETRY_JS)
    (b,) = g["blocks"]
    assert (b["quote"], b["markers"], b["dir"], b["lang"]) == ("«استضافت القاهرة اجتماعًا أمنيًا»", ["[1]"], "rtl", "ar")
    assert len(b["lines"]) == 1, g
    (line,) = b["lines"]
    assert b["direction"] == "rtl" and inside(line, b["block"]) and inside(b["block"], g["bubble"]), g
    assert g["lead"]["bottom"] <= b["block"]["top"] + 1, g  # under "… say:"
    assert b["close"]["left"] < b["open"]["left"], g  # right to left inside the quote
    assert b["afterText"] == ". " and b["after"]["right"] <= b["close"]["left"] + 1, g  # then the "." on its left
    assert b["marker"]["n"] == "1" and b["marker"]["right"] <= b["after"]["left"] + 1, g  # then [1]
    assert same_line(b["after"], line) and same_line(b["marker"], line), g
    latin = bubble.locator("bdi").nth(1).bounding_box()
    assert latin is not None and latin["y"] >= b["block"]["bottom"] - 1, g

    items = msg.locator(".sources .src")
    assert items.count() == 6
    one = items.nth(0)
    assert one.locator('[data-testid="source-outlet"]').text_content() == "Ahram"
    assert one.locator("time").text_content() == "2025-11-25"
    assert one.locator("time").get_attribute("datetime") == "2025-11-25"
    assert one.locator("a").get_attribute("href") == "http://ahram.example/cairo"
    assert one.locator(".sep").count() == 2
    two = items.nth(1)
    assert two.locator(".info").text_content() == f"Outlet {hostile}"
    assert two.locator(".sep, time, a").count() == 0
    three = items.nth(2)
    assert three.locator(".info").text_content() == "2025-11-26"
    assert three.locator(".sep, a, .outlet").count() == 0
    for i in (3, 4, 5):  # no outlet, no date, and no usable link: nothing at all
        assert items.nth(i).locator(".info").count() == 0
        assert items.nth(i).text_content() == f"{i + 1}{cites[i]['title']}"
    assert msg.locator("a").count() == 1
    assert "undefined" not in (msg.text_content() or "")


# Whether an element's text is drawn whole: nothing overflows its box, and its box lies inside its chip's.
WHOLE_JS = """(e) => {
    const r = e.getBoundingClientRect(), chip = e.closest(".source").getBoundingClientRect();
    return { scroll: e.scrollWidth, client: e.clientWidth, width: r.width,
             inChip: r.left >= chip.left - 1 && r.right <= chip.right + 1,
             onScreen: r.left >= 0 && r.right <= window.innerWidth };
}"""


def test_a_date_in_a_source_title_is_shown_whole(page: Any) -> None:
    """On a phone, a long title ending in a date: the chip shows the date whole in its own part (it was cut by
    the title's ellipsis, "25 نوفمبر 2025" becoming "…5"); only the rest of the title is shortened."""
    seed_title = "اجتماع طارئ -القاهرة – 25 نوفمبر 2025"
    long_title = ("اجتماع طارئ لبحث الخروقات المتكررة وضمان الانتقال إلى المرحلة الثانية من الاتفاق "
                  "-القاهرة – 25 نوفمبر 2025")
    base = {"doc_id": "d", "chunk_id": "c", "text": "استضافت القاهرة اجتماعًا أمنيًا.", "start": 0, "end": 10,
            "quote": "استضافت القاهرة اجتماعًا أمنيًا."}
    cites = [{**base, "n": 1, "title": long_title}, {**base, "n": 2, "title": seed_title},
             {**base, "n": 3, "title": "2025-11-26 اجتماع ثان في القاهرة"}, {**base, "n": 4, "title": "بلا تاريخ"}]
    final = "«استضافت القاهرة اجتماعًا أمنيًا.» [1][2][3][4]"

    def handler(route: Any) -> None:
        route.fulfill(status=200, content_type="text/event-stream", body=_sse(
            ("passages", cites), ("delta", {"text": final}),
            ("answer", {"answer": final, "language": "ar", "answerable": True, "citations": cites,
                        "session_id": "s1", "rewritten_question": None, "degraded": False,
                        "answerer": "extractive"}),
            ("done", None)))

    page.route("**/v1/chat", handler)
    page.goto("/")
    page.fill("#question", "متى عقد الاجتماع الطارئ؟")
    page.press("#question", "Enter")
    msg = wait_answered(page)
    chips = msg.locator(".sources .source")
    for i, day in enumerate(["25 نوفمبر 2025", "25 نوفمبر 2025", "2025-11-26"]):
        chip = chips.nth(i)
        assert chip.get_attribute("title") == cites[i]["title"]  # the whole title on hover
        date = chip.locator('[data-testid="source-title-date"]')
        assert date.text_content() == day
        whole = date.evaluate(WHOLE_JS)
        assert whole["width"] > 0 and whole["scroll"] <= whole["client"], whole  # nothing of it cut
        assert whole["inChip"] and whole["onScreen"], whole
        assert date.evaluate("d => getComputedStyle(d).flexShrink") == "0"
    # The long title is the part that gives way, with the ellipsis.
    title = chips.nth(0).locator(".t")
    assert title.evaluate("t => t.scrollWidth > t.clientWidth && getComputedStyle(t).textOverflow === 'ellipsis'")
    assert chips.nth(1).locator(".t").text_content() == "اجتماع طارئ -القاهرة"
    assert chips.nth(3).locator('[data-testid="source-title-date"]').count() == 0
    assert chips.nth(3).locator(".t").text_content() == "بلا تاريخ"


def test_an_answer_offered_as_the_closest_the_articles_come_is_marked(page: Any) -> None:
    cite = {"n": 1, "doc_id": "d1", "title": "T", "chunk_id": "c1", "text": "Before. The quote. After.",
            "quote": "The quote.", "start": 8, "end": 18}
    text = "The articles may not answer this directly; the closest they come: «The quote.» [1]"

    def handler(route: Any) -> None:
        route.fulfill(status=200, content_type="text/event-stream", body=_sse(
            ("passages", [cite]), ("delta", {"text": text}),
            ("answer", {"answer": text, "language": "en", "answerable": True, "citations": [cite],
                        "session_id": "s1", "rewritten_question": None, "degraded": False,
                        "answerer": "extractive", "confident": False}),
            ("done", None)))

    page.route("**/v1/chat", handler)
    page.goto("/")
    page.fill("#question", "anything")
    page.press("#question", "Enter")
    msg = wait_answered(page)
    assert msg.get_attribute("data-confident") == "false" and "unsure" in (msg.get_attribute("class") or "")
    assert msg.locator('[data-testid="answer"]').text_content() == text
    assert msg.locator(".sources .src").count() == 1  # its sources are shown as for any answer
