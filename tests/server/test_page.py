"""The chat page in a real Chromium (Debian's, driven by Playwright) against real `homellm serve` processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

HOMELLM = str(Path(sys.executable).with_name("homellm"))
HOSTILE = ('Look: <img src=x onerror="window.__xss=1"> and <script>window.__xss=2</script> '
           'and [click](javascript:window.__xss=3) and <b onmouseover="window.__xss=4">bold</b>')


def chromium_path() -> str:
    """Debian's chromium (Playwright's own download cannot work here); HOMELLM_CHROMIUM overrides."""
    for candidate in (os.environ.get("HOMELLM_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    raise RuntimeError("no Chromium found: `make test` installs Debian's chromium (apt-get install chromium), "
                       "or set HOMELLM_CHROMIUM to a Chromium executable")


def fulfill_stream(route: Route, chunks: list[dict]) -> None:
    """Answer a routed request with these chat chunks as server-sent events, as the server streams them."""
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path())
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def page_server(docs_home: Path) -> Iterator[ServerProcess]:
    """One slot and no queue: a slot that a stopped answer did not free would refuse the next message."""
    proc = ServerProcess(["--parallel", "1", "--queue", "0"], docs_home).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture
def page(browser: Browser, page_server: ServerProcess) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    opened.errors = []  # type: ignore[attr-defined]
    opened.foreign = []  # type: ignore[attr-defined]
    opened.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: opened.errors.append(str(e)))
    opened.on("request", lambda r: None if r.url.startswith(page_server.base_url) or r.url.startswith("data:")
              else opened.foreign.append(r.url))
    yield opened
    context.close()


def open_page(page: Page, server: ServerProcess, temperature: float | None = 0) -> None:
    page.goto(server.base_url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=30_000)
    if temperature is not None:
        page.locator("#settings summary").click()
        page.locator("#temperature").fill(str(temperature))


def ask(page: Page, text: str) -> None:
    page.locator("#prompt").fill(text)
    page.locator("#prompt").press("Enter")


def last_answer(page: Page):
    return page.locator("#messages .msg.assistant").last


def ask_collection(page: Page, server: ServerProcess, collection: str, question: str, source: str):
    """Ask `question` of `collection` on a freshly opened page; the answer's one source, once its summary
    names `source` (the answer is complete: the send button is back)."""
    open_page(page, server)
    page.locator("#collection").select_option(collection)
    ask(page, question)
    expect(page.locator("#send")).to_be_visible(timeout=60_000)
    sources = last_answer(page).locator(".sources details")
    expect(sources).to_have_count(1)
    expect(sources.locator("summary")).to_contain_text(source)
    return sources


def test_page_streams_an_answer_with_no_console_errors(page: Page, page_server: ServerProcess) -> None:
    response = httpx.get(page_server.base_url + "/")
    assert response.status_code == 200 and "script-src 'self'" in response.headers["content-security-policy"]
    open_page(page, page_server)
    expect(page.locator("#model option")).to_contain_text(["smollm2:135m"])
    ask(page, "Name the capital of France.")
    expect(page.locator("#stop")).to_be_visible()
    expect(page.locator("#send")).to_be_visible(timeout=60_000)
    expect(last_answer(page).locator(".body")).to_contain_text("Paris")
    expect(last_answer(page).locator(".note")).to_contain_text("tokens/s")
    assert page.errors == [] and page.foreign == []  # type: ignore[attr-defined]
    # The conversation survives a reload (localStorage).
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(last_answer(page).locator(".body")).to_contain_text("Paris")


def test_shift_enter_makes_a_new_line_and_enter_sends(page: Page, page_server: ServerProcess) -> None:
    open_page(page, page_server)
    page.locator("#prompt").fill("first line")
    page.locator("#prompt").press("Shift+Enter")
    assert page.locator("#messages .msg").count() == 0
    assert page.locator("#prompt").input_value() == "first line\n"


def test_stop_ends_a_long_answer_and_frees_the_slot(page: Page, page_server: ServerProcess) -> None:
    open_page(page, page_server, temperature=0.8)
    ask(page, "Write a very long story about a dragon who learns to bake bread, in twenty chapters.")
    body = last_answer(page).locator(".body")
    expect(body).not_to_be_empty(timeout=30_000)
    expect(body).to_have_text(re.compile(r"\S[\s\S]{40,}"), timeout=30_000)  # some of the story, then stop
    page.locator("#stop").click()
    expect(last_answer(page).locator(".note")).to_contain_text("stopped")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        models = httpx.get(page_server.base_url + "/homellm/ps").json()["models"]
        if all(m["busy_slots"] == 0 for m in models):
            break
        time.sleep(0.1)
    assert all(m["busy_slots"] == 0 for m in models)
    page.locator("#temperature").fill("0")
    ask(page, "Name the capital of France.")
    expect(page.locator("#send")).to_be_visible(timeout=60_000)
    expect(last_answer(page).locator(".body")).to_contain_text("Paris")


def test_model_output_with_html_renders_as_text(page: Page, page_server: ServerProcess) -> None:
    def hostile_stream(route: Route) -> None:
        chunks = [{"choices": [{"index": 0, "delta": {"content": part}, "finish_reason": None}]}
                  for part in (HOSTILE[:30], HOSTILE[30:], "\n\n```html\n<script>window.__xss=5</script>\n```")]
        chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        fulfill_stream(route, chunks)

    open_page(page, page_server)
    page.route("**/v1/chat/completions", hostile_stream)
    ask(page, "say something nasty")
    answer = last_answer(page)
    expect(answer.locator(".body")).to_contain_text('<img src=x onerror="window.__xss=1">')
    expect(answer.locator(".body")).to_contain_text("<script>window.__xss=2</script>")
    expect(answer.locator("pre code")).to_have_text("<script>window.__xss=5</script>")
    assert page.locator("#messages img, #messages script, #messages b, #messages a").count() == 0
    assert page.evaluate("window.__xss") is None
    # Stored and shown again after a reload: still text.
    page.unroute("**/v1/chat/completions")
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(last_answer(page).locator(".body")).to_contain_text("<script>window.__xss=2</script>")
    assert page.locator("#messages img, #messages script").count() == 0
    assert page.evaluate("window.__xss") is None


def test_key_protected_server_asks_for_the_key_once(browser: Browser, docs_home: Path) -> None:
    server = ServerProcess(["--api-key", "s3cret", "--parallel", "1"], docs_home).wait_ready()
    try:
        page = browser.new_page()
        page.goto(server.base_url + "/")
        dialog = page.locator("#key-dialog")
        expect(dialog).to_be_visible()
        page.locator("#key").fill("wrong")
        page.locator("#key-form button").click()
        expect(page.locator("#key-error")).to_be_visible()
        page.locator("#key").fill("s3cret")
        page.locator("#key-form button").click()
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(dialog).to_be_hidden()
        page.locator("#settings summary").click()
        page.locator("#temperature").fill("0")
        ask(page, "Name the capital of France.")
        expect(page.locator("#send")).to_be_visible(timeout=60_000)
        expect(last_answer(page).locator(".body")).to_contain_text("Paris")
        page.reload()  # kept for the session: no second prompt
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(dialog).to_be_hidden()
        page.close()
    finally:
        server.stop()


# The text of an element that a person can see: text nodes (citation buttons left out) laid out with
# a size, inside the viewport, and on top where they are drawn (nothing covers them).
SEEN_TEXT = """(root) => {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const seen = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!node.data.trim() || parent.closest(".cite")) continue;
    const style = getComputedStyle(parent);
    if (Number(style.opacity) === 0 || style.color === "rgba(0, 0, 0, 0)") continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const shown = [...range.getClientRects()].some((r) => {
      const x = r.left + r.width / 2;
      const y = r.top + r.height / 2;
      if (r.width < 1 || r.height < 1 || x < 0 || y < 0 || x > innerWidth || y > innerHeight) return false;
      const hit = document.elementFromPoint(x, y);
      return hit !== null && (hit === parent || parent.contains(hit));
    });
    if (shown) seen.push(node.data);
  }
  return seen.join(" ");
}"""


def assert_answer_text_is_seen(page: Page) -> None:
    """The last answer's own words (not only citation marks) are on screen, inside its bubble."""
    answer = last_answer(page)
    body = answer.locator(".body")
    expect(body).to_be_visible()
    seen = body.evaluate(SEEN_TEXT)
    assert len(re.findall(r"[^\W\d_]{2,}", re.sub(r"\[\d{1,2}\]", "", seen))) >= 2, \
        f"no answer text on screen: {seen!r} (the body holds {body.inner_text()!r})"
    box, bubble = body.bounding_box(), answer.bounding_box()
    assert box is not None and bubble is not None and box["height"] > 0
    assert bubble["y"] <= box["y"] and box["y"] + box["height"] <= bubble["y"] + bubble["height"]
    sources = answer.locator(".sources")
    if sources.count():
        sources_box = sources.bounding_box()
        assert sources_box is not None and box["y"] + box["height"] <= sources_box["y"]  # the text, then its sources


def test_answer_from_a_collection_shows_its_text_and_clickable_sources(page: Page, page_server: ServerProcess,
                                                                       docs_home: Path, tmp_path: Path) -> None:
    """With HOMELLM_SCREENSHOT=docs/chat-page.png it also takes the README's screenshot:
    `HOMELLM_SCREENSHOT=docs/chat-page.png .venv/bin/pytest tests/server/test_page.py -k collection`."""
    # The built-in 135M model answers this one with a sentence from the document (other questions get
    # only citation marks back, as "[1] [2] [3]"); the test asserts visible text, not which words.
    (tmp_path / "trip.md").write_text("# Trip\n\nThe train to Lyon leaves at 9:15 from platform 4.\n")
    env = {**os.environ, "HOMELLM_HOME": str(docs_home)}
    subprocess.run([HOMELLM, "docs", "add", "notes", str(tmp_path)], env=env, check=True, capture_output=True)
    try:
        sources = ask_collection(page, page_server, "notes", "When does the train to Lyon leave?", "trip.md:3-3")
        expect(sources.locator("pre")).to_be_hidden()
        assert_answer_text_is_seen(page)
        sources.locator("summary").click()
        expect(sources.locator("pre")).to_contain_text("platform 4")
        assert_answer_text_is_seen(page)  # the opened source does not push the answer away
        assert "Sources:" not in last_answer(page).locator(".body").inner_text()
        if screenshot := os.environ.get("HOMELLM_SCREENSHOT"):
            page.locator("#settings summary").click()  # closed again: the machine panel shows instead
            page.locator("#machine summary").click()
            expect(page.locator("#plan")).to_contain_text("fits")
            expect(page.locator("#loaded")).to_contain_text("ready")
            assert_answer_text_is_seen(page)
            page.screenshot(path=screenshot)
    finally:
        subprocess.run([HOMELLM, "docs", "rm", "notes"], env=env, check=True, capture_output=True)


def test_citation_marks_without_a_source_stay_text(page: Page, page_server: ServerProcess) -> None:
    """A small model may answer `[1] [2] [3]` beside one source: only [1] becomes a button."""
    citation = {"index": 1, "path": "/notes/garden.md", "lines": [3, 3], "text": "Water the tomatoes.",
                "score": 1.0, "chunk_id": 1}

    def cited_stream(route: Route) -> None:
        chunks = [{"choices": [{"index": 0, "delta": {"content": "Water them every morning [1] [2] [3]"},
                                "finish_reason": None}]},
                  {"choices": [{"index": 0, "delta": {"content": "\n\nSources:\n[1] /notes/garden.md:3-3"},
                                "finish_reason": None}]},
                  {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                   "homellm": {"citations": [citation]}}]
        fulfill_stream(route, chunks)

    open_page(page, page_server)
    page.route("**/v1/chat/completions", cited_stream)
    ask(page, "When should I water the tomatoes?")
    answer = last_answer(page)
    expect(answer.locator(".sources details")).to_have_count(1)
    expect(answer.locator(".body")).to_have_text("Water them every morning [1] [2] [3]")
    expect(answer.locator(".body .cite")).to_have_count(1)
    answer.locator(".body .cite").click()
    expect(answer.locator(".sources pre")).to_be_visible()
    assert_answer_text_is_seen(page)
    assert page.errors == []  # type: ignore[attr-defined]


def test_phone_width_and_keyboard(browser: Browser, page_server: ServerProcess) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, color_scheme="dark")
    page = context.new_page()
    open_page(page, page_server, temperature=None)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    expect(page.locator("#side")).to_be_hidden()
    expect(page.locator("#prompt")).to_be_visible()
    # Keyboard only: Tab reaches the menu button first, Enter opens the side panel, Tab goes on into it.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "toggle-side"
    page.keyboard.press("Enter")
    expect(page.locator("#new-chat")).to_be_visible()
    reached = []
    for _ in range(3):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id"))
    assert reached[0] == "model" and "new-chat" in reached
    # Dark mode: the page's own colours follow the system's.
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)"
    context.close()


def test_regenerate_replaces_the_answer_and_the_machine_panel_fills(page: Page, page_server: ServerProcess) -> None:
    open_page(page, page_server)
    ask(page, "Name the capital of France.")
    expect(page.locator("#send")).to_be_visible(timeout=60_000)
    page.locator("#regenerate").click()
    expect(page.locator("#send")).to_be_visible(timeout=60_000)
    expect(page.locator("#messages .msg.assistant")).to_have_count(1)  # replaced, not added
    expect(last_answer(page).locator(".body")).to_contain_text("Paris")
    page.locator("#machine summary").click()
    expect(page.locator("#machine-facts")).to_contain_text("CPU")
    expect(page.locator("#loaded")).to_contain_text("smollm2:135m")
    expect(page.locator("#plan")).to_contain_text("fits")
    expect(page.locator("#last-stats")).to_contain_text("tokens/s")
    page.locator("#new-chat").click()
    expect(page.locator("#messages .msg")).to_have_count(0)
    expect(page.locator("#conversations li")).to_have_count(2)
