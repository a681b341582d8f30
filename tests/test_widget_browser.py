"""The embeddable widget in a real browser (Playwright driving Debian's Chromium), embedded in a page on a
*different* origin, against the real server, real Weaviate and the scripted fake LLM."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Locator, Page, ViewportSize, async_playwright, expect

from core.answer.log import AnswerLog
from core.config import Settings
from tests.conftest import web_settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.servers import HOSTILE, RunningServer, run_server
from tests.support import REPO

OUTPUT = REPO / "tests" / "output"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PORT_ANSWER = ["The dashboard ", "listens on port **8470** [1]."]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: run `bash scripts/setup.sh --dev`", pytrace=False)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        await launched.close()


def host_page(host_site: tuple[str, Path], web: RunningServer, name: str, bot: str = "docs", extra: str = "") -> str:
    """A customer's page on another origin, embedding the widget with one tag."""
    origin, root = host_site
    (root / name).write_text(
        "<!doctype html><html><head><meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<style>* { color: red !important; font-size: 40px !important; } button { display: none !important; }</style>"
        f"</head><body><h1>Customer site</h1><div id='slot' style='height:600px'></div>"
        f"<script src='{web.url}/widget.js' data-bot='{bot}' {extra} defer></script></body></html>"
    )
    return f"{origin}/{name}"


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    opened = await context.new_page()
    yield opened
    await context.close()


async def ask(page: Page, question: str) -> None:
    # Like a person, wait for the previous answer to finish: the widget ignores Enter while it streams.
    await expect(page.get_by_test_id("sb-log")).not_to_have_attribute("aria-busy", "true", timeout=20_000)
    await page.get_by_test_id("sb-input").fill(question)
    await page.get_by_test_id("sb-input").press("Enter")


def last_answer(page: Page) -> Locator:
    return page.locator("[data-testid=sb-message][data-role=assistant]").last


async def test_ask_stream_cite_reload_feedback_new_conversation(
    page: Page, web: RunningServer, host_site: tuple[str, Path], fake_llm: FakeOpenAI
) -> None:
    await page.goto(host_page(host_site, web, "docs.html"))
    launcher = page.get_by_test_id("sb-launcher")
    await expect(launcher).to_be_visible()  # the host page's `button { display: none }` cannot reach into the widget
    await launcher.click()
    await expect(page.get_by_test_id("sb-panel")).to_be_visible()
    await expect(page.get_by_test_id("sb-input")).to_be_focused()
    await expect(page.get_by_text("Hi! Ask me about Kestrel.")).to_be_visible()

    fake_llm.enqueue(Reply(chunks=PORT_ANSWER, stall_after=1, stall_seconds=1.5))
    await ask(page, "Which port does the Kestrel dashboard listen on?")
    await expect(last_answer(page)).to_contain_text("The dashboard")  # the first token, before the rest arrives
    await expect(last_answer(page)).not_to_contain_text("8470")
    await expect(last_answer(page)).to_contain_text("listens on port 8470", timeout=10_000)
    await expect(last_answer(page).locator("strong")).to_have_text("8470")  # Markdown rendered
    citations = page.get_by_test_id("sb-citation")
    await expect(citations.first).to_be_visible()
    await page.get_by_test_id("sb-cite").first.click()  # the [1] in the text opens that source
    await expect(citations.first).to_contain_text("Kestrel")

    OUTPUT.mkdir(exist_ok=True)
    await page.screenshot(path=str(OUTPUT / "widget-open.png"))

    async with page.expect_request("**/api/feedback") as sent:
        await page.get_by_test_id("sb-thumb-down").last.click()
    await expect(page.get_by_test_id("sb-thumb-down").last).to_have_attribute("aria-pressed", "true")
    request = await sent.value
    response = await request.response()
    assert response is not None and response.status == 204
    answer_id = request.post_data_json["answer_id"]
    stored = await AnswerLog(web.settings.data_dir / "answers.sqlite3").feedback(answer_id)
    assert stored is not None and stored.rating == "down"  # stored next to the answer and its sources

    await page.reload()
    await page.get_by_test_id("sb-launcher").click()
    await expect(last_answer(page)).to_contain_text("listens on port 8470")  # history survives the reload
    await expect(page.locator("[data-testid=sb-message][data-role=user]")).to_have_count(1)

    await page.get_by_test_id("sb-new").click()
    await expect(page.locator("[data-testid=sb-message][data-role=user]")).to_have_count(0)
    await page.reload()
    await page.get_by_test_id("sb-launcher").click()
    await expect(page.locator("[data-testid=sb-message][data-role=user]")).to_have_count(0)


async def test_disallowed_origin_gets_a_clear_refusal(
    page: Page, web: RunningServer, host_site: tuple[str, Path]
) -> None:
    await page.goto(host_page(host_site, web, "closed.html", bot="closed"))
    await page.get_by_test_id("sb-launcher").click()
    refusal = page.locator("[data-testid=sb-message][data-role=error]")
    await expect(refusal).to_contain_text("is not allowed to use this assistant")


async def test_mobile_viewport_goes_full_screen(
    browser: Browser, web: RunningServer, host_site: tuple[str, Path]
) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 740}, is_mobile=True, has_touch=True)
    page = await context.new_page()
    await page.goto(host_page(host_site, web, "mobile.html"))
    await page.get_by_test_id("sb-launcher").click()
    box = await page.get_by_test_id("sb-panel").bounding_box()
    assert box is not None and (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 390, 740)
    await context.close()


async def test_hostile_documents_and_model_output_never_execute(
    page: Page, web: RunningServer, host_site: tuple[str, Path], fake_llm: FakeOpenAI
) -> None:
    await page.goto(host_page(host_site, web, "xss.html"))
    await page.get_by_test_id("sb-launcher").click()
    fake_llm.enqueue(Reply(chunks=["Careful: ", HOSTILE, " [1]"]))
    await ask(page, "Can I paste API tokens into a chat? What do the security notes say?")
    answer = last_answer(page)
    await expect(answer).to_contain_text("Careful:", timeout=10_000)
    await expect(answer).to_contain_text("[1]")
    await expect(answer.get_by_test_id("sb-citation").first).to_be_visible()  # the done event arrived
    for citation in await answer.get_by_test_id("sb-citation").all():
        await citation.click()  # expand every snippet, including the hostile document's
    for link in await answer.locator("a").all():
        await link.click()
    for bold in await answer.locator("b, strong").all():
        await bold.hover()
    await page.wait_for_timeout(500)
    assert await page.evaluate("window.__xss") is None
    assert await answer.locator("script, img[onerror], [onmouseover], a[href^='javascript']").count() == 0
    snippets = await answer.get_by_test_id("sb-citation").all_inner_texts()
    assert any("onerror" in text for text in snippets)  # the hostile document is shown as text


async def test_keyboard_and_screen_reader_basics(page: Page, web: RunningServer, host_site: tuple[str, Path]) -> None:
    await page.goto(host_page(host_site, web, "a11y.html"))
    launcher = page.get_by_test_id("sb-launcher")
    await expect(launcher).to_have_attribute("aria-expanded", "false")
    await launcher.focus()
    await page.keyboard.press("Enter")
    await expect(launcher).to_have_attribute("aria-expanded", "true")
    await expect(page.get_by_role("dialog", name="Kestrel docs")).to_be_visible()
    await expect(page.get_by_role("log")).to_be_attached()
    await expect(page.get_by_test_id("sb-input")).to_be_focused()
    await expect(page.get_by_label("Kestrel docs").get_by_role("textbox")).to_be_visible()  # labelled input
    await page.keyboard.press("Escape")
    await expect(page.get_by_test_id("sb-panel")).to_be_hidden()
    await expect(launcher).to_be_focused()  # focus returns to where it came from


async def test_inline_mode_fills_the_given_element(
    page: Page, web: RunningServer, host_site: tuple[str, Path], fake_llm: FakeOpenAI
) -> None:
    await page.goto(host_page(host_site, web, "inline.html", extra="data-mode='inline' data-target='#slot'"))
    panel = page.locator("#slot").get_by_test_id("sb-panel")
    await expect(panel).to_be_visible()
    await expect(page.get_by_test_id("sb-launcher")).to_have_count(0)
    slot, inside = await page.locator("#slot").bounding_box(), await panel.bounding_box()
    assert slot is not None and inside is not None and abs(slot["height"] - inside["height"]) < 2
    fake_llm.enqueue(Reply(chunks=PORT_ANSWER))
    await ask(page, "Which port does the Kestrel dashboard listen on?")
    await expect(last_answer(page)).to_contain_text("listens on port 8470", timeout=10_000)


async def test_typing_indicator_copy_and_theming(
    browser: Browser, web: RunningServer, host_site: tuple[str, Path], fake_llm: FakeOpenAI
) -> None:
    context = await browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = await context.new_page()
    extra = "data-color='rgb(200, 30, 30)' data-title='Ask Kestrel'"
    await page.goto(host_page(host_site, web, "themed.html", extra=extra))
    await page.get_by_test_id("sb-launcher").click()
    await expect(page.get_by_role("dialog", name="Ask Kestrel")).to_be_visible()
    send = page.get_by_test_id("sb-send")
    background = await send.evaluate("element => getComputedStyle(element).backgroundColor")
    assert background == "rgb(200, 30, 30)"

    fake_llm.enqueue(Reply(chunks=PORT_ANSWER, stall_before=1.5))
    await ask(page, "Which port does the Kestrel dashboard listen on?")
    await expect(page.get_by_test_id("sb-typing")).to_be_visible()  # while the model has not answered yet
    await expect(last_answer(page)).to_contain_text("listens on port 8470", timeout=10_000)
    await expect(page.get_by_test_id("sb-typing")).to_have_count(0)
    await page.get_by_test_id("sb-copy").last.click()
    assert await page.evaluate("navigator.clipboard.readText()") == "".join(PORT_ANSWER)
    await context.close()


async def test_rate_limited_and_unreachable_server_messages(
    page: Page,
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    host_site: tuple[str, Path],
    tmp_path: Path,
) -> None:
    tight = web_settings(
        settings, fake_llm, host_site[0], tmp_path, rate_limit_session="1/minute", max_message_chars=120
    )
    with run_server(tight) as web:
        await page.goto(host_page(host_site, web, "limited.html"))
        await page.get_by_test_id("sb-launcher").click()
        await expect(page.get_by_test_id("sb-input")).to_have_attribute("maxlength", "120")  # the server's limit
        fake_llm.enqueue(Reply(chunks=PORT_ANSWER))
        await ask(page, "Which port does the Kestrel dashboard listen on?")
        await expect(last_answer(page)).to_contain_text("listens on port 8470", timeout=10_000)
        await ask(page, "And how do I change it?")
        error = page.locator("[data-testid=sb-message][data-role=error]").last
        await expect(error).to_contain_text("too quickly")
        await expect(error).to_contain_text("seconds")
    await ask(page, "Are you still there?")  # the server is gone now
    await expect(page.locator("[data-testid=sb-message][data-role=error]").last).to_contain_text("Can't reach")


async def test_demo_page_on_a_phone_shows_the_launcher_and_passes_axe(
    browser: Browser, web: RunningServer, fake_llm: FakeOpenAI
) -> None:
    """The server's own demo page on a 390 px phone: nothing widens the layout past the screen (a wide page would
    put the fixed launcher off-screen until the user scrolls sideways); the launcher can be tapped where it is,
    an answer streams; axe-core finds no serious or critical problem in the widget and the page has landmarks."""
    phone: ViewportSize = {"width": 390, "height": 844}
    # bypass_csp: the page's CSP (script-src 'self') would block the injected axe-core, a test tool only.
    context = await browser.new_context(viewport=phone, is_mobile=True, has_touch=True, bypass_csp=True)
    page = await context.new_page()
    await page.goto(f"{web.url}/")
    launcher = page.get_by_test_id("sb-launcher")
    await expect(launcher).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= phone["width"]
    box = await launcher.bounding_box()
    assert box is not None and box["x"] >= 0 and box["y"] >= 0
    assert box["x"] + box["width"] <= phone["width"] and box["y"] + box["height"] <= phone["height"], box
    await launcher.tap()
    assert await page.evaluate("[window.scrollX, window.scrollY]") == [0, 0]  # tapped without scrolling to it
    await expect(page.get_by_test_id("sb-panel")).to_be_visible()
    fake_llm.enqueue(Reply(chunks=PORT_ANSWER, stall_after=1, stall_seconds=1.0))
    await ask(page, "Which port does the Kestrel dashboard listen on?")
    await expect(last_answer(page)).to_contain_text("The dashboard")
    await expect(last_answer(page)).to_contain_text("listens on port 8470", timeout=10_000)
    await expect(page.get_by_test_id("sb-log")).not_to_have_attribute("aria-busy", "true")

    await page.add_script_tag(path=str(REPO / "widget" / "node_modules" / "axe-core" / "axe.min.js"))
    violations = await page.evaluate("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations)")
    found = {v["id"]: (v["impact"], [n["target"] for n in v["nodes"]]) for v in violations}
    assert not {k: v for k, v in found.items() if v[0] in ("serious", "critical")}, found
    assert "region" not in found and "landmark-one-main" not in found, found  # the page's content is in <main>
    await context.close()
