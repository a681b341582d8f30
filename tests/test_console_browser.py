"""The admin console (/admin/ui) in the real browser (Playwright driving Debian's Chromium) against the real
server: sign-in, the session cookie, CSRF refusals, the Analytics page with its chart matching /admin/stats,
the 👎 queue, API keys created once-shown and revoked; no console errors, and axe-core on each page. The
server and its answer log are test_admin_stats's."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, FilePayload, Page, expect

from tests.servers import RunningServer
from tests.support import REPO
from tests.test_admin_stats import KEY, get, server  # noqa: F401  (the server fixture, with its answer log)
from tests.test_widget_browser import browser  # noqa: F401  (the session's Chromium)

# The README's screenshots are refreshed with UPDATE_SCREENSHOTS=1; other runs keep theirs in tests/output.
SHOTS = REPO / "docs" if os.environ.get("UPDATE_SCREENSHOTS") else REPO / "tests" / "output"


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:  # noqa: F811
    # bypass_csp: the console's CSP (script-src 'self') would block the injected axe-core, a test tool only.
    opened = await browser.new_context(viewport={"width": 1280, "height": 1000}, bypass_csp=True)
    yield opened
    await opened.close()


def console_errors(page: Page) -> list[str]:
    """What the page logs as errors from now on (it must log none)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


async def sign_in(page: Page, url: str, key: str = KEY) -> None:
    await page.goto(f"{url}/admin/ui/analytics")
    await expect(page).to_have_url(f"{url}/admin/ui/signin")  # no session: to the sign-in page
    await page.get_by_label("Admin key").fill(key)
    await page.get_by_role("button", name="Sign in").click()


async def test_sign_in_analytics_chart_and_accessibility(
    context: BrowserContext,
    server: RunningServer,  # noqa: F811
) -> None:
    page = await context.new_page()
    errors = console_errors(page)

    await sign_in(page, server.url, "not-the-key-0123456789")
    await expect(page.get_by_role("alert")).to_have_text("That is not the admin key.")
    assert errors == ["Failed to load resource: the server responded with a status of 401 (Unauthorized)"]
    errors.clear()  # the refused sign-in answers 401, which Chromium logs; nothing else may log an error
    await page.get_by_label("Admin key").fill(KEY)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{server.url}/admin/ui/analytics")
    await expect(page.get_by_role("heading", name="Analytics", exact=True)).to_be_visible()

    (cookie,) = [c for c in await context.cookies() if c["name"] == "sb_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/admin/ui"
    assert not cookie["secure"]  # plain http here; over https the cookie is Secure
    assert cookie["expires"] > 0  # expires (8 hours), not a browser-session cookie

    await page.get_by_label("Bot").select_option("closed")
    await page.get_by_role("button", name="Show").click()
    await expect(page).to_have_url(f"{server.url}/admin/ui/analytics?since=7d&bot=closed")
    api = get(server, "?since=7d&bot=closed").json()
    summary = page.get_by_test_id("summary")
    await expect(summary.locator("tbody td").first).to_have_text(str(api["questions"]))
    await expect(summary).to_contain_text("25.0%")
    await expect(page.get_by_test_id("gaps")).to_contain_text("enterprise")
    await expect(page.get_by_test_id("sources")).to_contain_text("docs/install.md")

    # The chart draws the API's per-day numbers (Chart.js's own data, read back from the canvas's chart).
    chart = await page.evaluate(
        "() => { const c = Chart.getChart(document.getElementById('per-day-chart'));"
        " return c.data.datasets.map(d => [d.label, c.data.labels.map((day, i) => [day, d.data[i]])]); }"
    )
    drawn = {(day, label): n for label, points in chart for day, n in points if n}
    assert drawn == {(d["day"], d["channel"]): d["questions"] for d in api["per_day"]}

    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SHOTS / "console-analytics.png"), full_page=True)
    assert await axe_violations(page) == {}
    assert errors == []

    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(f"{server.url}/admin/ui/signin")
    await page.goto(f"{server.url}/admin/ui/analytics")
    await expect(page).to_have_url(f"{server.url}/admin/ui/signin")


@pytest.fixture
async def signed_in(
    context: BrowserContext,
    server: RunningServer,  # noqa: F811
) -> tuple[Page, list[str]]:
    """A page signed in to the console, and what it logs as errors."""
    page = await context.new_page()
    errors = console_errors(page)
    await sign_in(page, server.url)
    return page, errors


async def axe_violations(page: Page) -> dict[str, object]:
    """Serious or critical axe-core findings on the page."""
    await page.add_script_tag(path=str(REPO / "widget" / "node_modules" / "axe-core" / "axe.min.js"))
    violations = await page.evaluate("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations)")
    found = {v["id"]: (v["impact"], [n["target"] for n in v["nodes"]]) for v in violations}
    return {k: v for k, v in found.items() if v[0] in ("serious", "critical")}


async def test_feedback_queue_and_api_keys(
    signed_in: tuple[Page, list[str]],
    server: RunningServer,  # noqa: F811
) -> None:
    page, errors = signed_in

    await page.get_by_role("link", name="Feedback").click()
    queue = page.get_by_test_id("feedback")
    await expect(queue).to_contain_text("How much is the enterprise price?")  # the one 👎 of the log
    await expect(queue).not_to_contain_text("How do I install it?")  # rated 👍: not in the queue
    assert await axe_violations(page) == {}

    await page.get_by_role("link", name="API keys").click()
    await page.get_by_label("What it is for").fill("ci pipeline")
    await page.get_by_label("docs").check()
    await page.get_by_role("button", name="Create key").click()
    plain = (await page.get_by_test_id("created-key").locator("code").inner_text()).strip()
    assert plain.startswith("sb-")
    models = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {plain}"}, timeout=30)
    assert models.status_code == 200, models.text
    row = page.locator("tr", has_text="ci pipeline")
    await expect(row).to_contain_text("docs")
    await expect(row).to_contain_text("active")
    assert await axe_violations(page) == {}

    await page.goto(f"{server.url}/admin/ui/keys")
    await expect(page.get_by_test_id("created-key")).to_have_count(0)  # shown once, never again
    await page.screenshot(path=str(SHOTS / "console-keys.png"), full_page=True)
    await row.get_by_role("button", name="Revoke").click()
    await expect(page).to_have_url(f"{server.url}/admin/ui/keys")
    await expect(page.locator("tr", has_text="ci pipeline")).to_contain_text("revoked")
    revoked = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {plain}"}, timeout=30)
    assert revoked.status_code == 401
    assert errors == []


async def test_conversations_transcript_and_bots(
    signed_in: tuple[Page, list[str]],
    server: RunningServer,  # noqa: F811
) -> None:
    page, errors = signed_in

    await page.get_by_role("link", name="Conversations").click()
    await page.get_by_label("Bot").select_option("closed")
    await page.get_by_role("button", name="Show").click()
    listed = page.get_by_test_id("conversations")
    await expect(listed.locator("tbody tr")).to_have_count(5)  # the closed bot's five, the oldest too
    assert await axe_violations(page) == {}
    await listed.get_by_role("link", name="How much is the enterprise price?").click()
    transcript = page.get_by_test_id("transcript")
    await expect(transcript).to_contain_text("How much is the enterprise price?")
    await expect(transcript).to_contain_text("install.md")  # the sources it showed
    await expect(transcript).to_contain_text("Feedback: thumbs down")
    assert await axe_violations(page) == {}
    # Erasing one (the oldest: the other tests read the rest) takes it off the list.
    await page.go_back()
    await listed.get_by_role("link", name="Long ago").click()
    await page.get_by_role("button", name="Erase this conversation").click()
    await expect(page).to_have_url(f"{server.url}/admin/ui/conversations?bot=closed")
    await expect(listed.locator("tbody tr")).to_have_count(4)
    await expect(listed).not_to_contain_text("Long ago")

    await page.get_by_role("link", name="Bots").click()
    docs = page.get_by_test_id("bots").locator("tr", has_text="Kestrel Helper")
    await expect(docs).to_contain_text("widget")  # its channel table (allowed origins, look)
    assert await axe_violations(page) == {}
    assert errors == []


async def until_jobs_done(page: Page) -> None:
    """Reload a KB's page until none of its jobs is queued or running (jobs run in the server)."""
    for _ in range(240):
        states = await page.get_by_test_id("jobs").locator("tbody tr td:nth-child(4)").all_inner_texts()
        if states and not {"queued", "running"} & set(states):
            return
        await page.wait_for_timeout(500)
        await page.reload()
    raise AssertionError(f"jobs still running: {states}")


async def test_knowledge_base_upload_add_url_and_delete(
    signed_in: tuple[Page, list[str]],
    server: RunningServer,  # noqa: F811
    host_site: tuple[str, Path],
) -> None:
    origin, root = host_site
    (root / "console-guide.html").write_text(
        "<html><head><title>Pruning roses</title></head><body><main><h1>Pruning roses</h1>"
        "<p>Prune roses in late winter, just above an outward-facing bud.</p></main></body></html>"
    )
    kb = f"t_console_{uuid.uuid4().hex[:8]}"
    page, errors = signed_in
    await page.get_by_role("link", name="Knowledge bases").click()
    await page.get_by_label("Open or start a knowledge base").fill(kb)
    await page.get_by_role("button", name="Open").click()
    await expect(page).to_have_url(f"{server.url}/admin/ui/kbs/{kb}")
    await page.get_by_label("URLs, one a line").fill(f"{origin}/console-guide.html")
    await page.get_by_role("button", name="Add").click()
    await expect(page).to_have_url(f"{server.url}/admin/ui/kbs/{kb}")
    await expect(page.get_by_test_id("jobs")).to_contain_text("console-guide.html")
    await until_jobs_done(page)
    documents = page.get_by_test_id("documents")
    await expect(documents).to_contain_text("Pruning roses")
    assert await axe_violations(page) == {}

    note = b"# Watering tomatoes\n\nWater tomatoes deeply twice a week, at the base of the plant.\n"
    await page.get_by_label("Files").set_input_files(
        FilePayload(name="tomatoes.md", mimeType="text/markdown", buffer=note)
    )
    await page.get_by_role("button", name="Upload").click()
    await expect(page).to_have_url(f"{server.url}/admin/ui/kbs/{kb}")
    await expect(page.get_by_test_id("jobs")).to_contain_text("tomatoes.md")  # swapped in by htmx
    await until_jobs_done(page)
    await expect(documents).to_contain_text("Watering tomatoes")
    await expect(documents.locator("tbody tr")).to_have_count(2)
    await documents.get_by_role("button", name="Delete Pruning roses").click()
    await expect(page.get_by_test_id("documents")).not_to_contain_text("Pruning roses")
    await page.get_by_role("link", name="Knowledge bases").click()
    await expect(page.get_by_test_id("kbs")).to_contain_text(kb)
    assert await axe_violations(page) == {}
    assert errors == []


async def test_csrf_and_headers(
    context: BrowserContext,
    server: RunningServer,  # noqa: F811
) -> None:
    page = await context.new_page()
    await sign_in(page, server.url)
    await expect(page).to_have_url(f"{server.url}/admin/ui/analytics")
    cookies = {c["name"]: c["value"] for c in await context.cookies()}
    with httpx.Client(base_url=server.url, cookies=cookies, timeout=30) as client:
        # The session is there, but a form post without its CSRF token, or with another, is refused.
        assert client.post("/admin/ui/signout", data={}).status_code == 403
        assert client.post("/admin/ui/signout", data={"csrf": "forged"}).status_code == 403
        keys_before = client.get("/admin/ui/keys").text.count("<tr data-key=")
        assert client.post("/admin/ui/keys", data={"name": "forged"}).status_code == 403
        assert client.post("/admin/ui/keys", data={"name": "forged", "csrf": "forged"}).status_code == 403
        assert client.get("/admin/ui/keys").text.count("<tr data-key=") == keys_before  # nothing created
        assert client.post("/admin/ui/keys/0123abcd/revoke", data={}).status_code == 403
        assert (
            client.post("/admin/ui/transcript/forget", data={"channel": "web", "conversation": "x"}).status_code == 403
        )
        assert client.post("/admin/ui/kbs/t_console/urls", data={"urls": "https://example.com/"}).status_code == 403
        upload = {"files": ("a.md", b"# A\n\nText.\n", "text/markdown")}
        assert client.post("/admin/ui/kbs/t_console/uploads", files=upload).status_code == 403
        forged_upload = client.post("/admin/ui/kbs/t_console/uploads", files=upload, data={"csrf": "forged"})
        assert forged_upload.status_code == 403
        doc = "0" * 32
        assert client.post(f"/admin/ui/kbs/t_console/documents/{doc}/delete", data={}).status_code == 403
        # With the session's token, the admin API's own refusals come through.
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/admin/ui/keys").text)
        assert token is not None
        bad_url = client.post("/admin/ui/kbs/t_console/urls", data={"urls": "ftp://x/", "csrf": token[1]})
        assert bad_url.status_code == 400 and "ftp" in bad_url.json()["detail"]
        assert client.post("/admin/ui/kbs/Bad-Name/urls", data={"urls": "x", "csrf": token[1]}).status_code == 422
        exe = {"files": ("run.exe", b"MZ", "application/octet-stream")}
        assert client.post("/admin/ui/kbs/t_console/uploads", files=exe, data={"csrf": token[1]}).status_code == 415
        gone = client.post(f"/admin/ui/kbs/t_console/documents/{doc}/delete", data={"csrf": token[1]})
        assert gone.status_code == 404
        assert client.get("/admin/ui/analytics").status_code == 200  # still signed in
        # Sign-in forms carry a signed nonce: a sign-in posted from elsewhere, without it, is refused too.
        assert client.post("/admin/ui/signin", data={"key": KEY}).status_code == 403
        assert client.post("/admin/ui/signin", data={"key": KEY, "csrf": "forged"}).status_code == 403
        page_headers = client.get("/admin/ui/analytics").headers
        csp = page_headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert client.get("/admin/ui/analytics?since=7y").status_code == 422
        assert client.get("/admin/ui/analytics/gaps?since=7y").status_code == 422
        assert client.get("/admin/ui/analytics/gaps?bot=nobody").status_code == 404
        # Without JavaScript the gaps are a link away (htmx loads them into the Analytics page).
        assert "/admin/ui/analytics/gaps?since=7d" in client.get("/admin/ui/analytics").text
        assert "enterprise" in client.get("/admin/ui/analytics/gaps?since=7d&bot=closed").text
        assert client.get("/admin/ui/feedback?bot=nobody").status_code == 404
        assert client.get("/admin/ui/conversations?bot=nobody").status_code == 404
        assert client.get("/admin/ui/transcript?channel=web&conversation=none").status_code == 404
        assert client.get("/admin/ui/transcript?channel=web").status_code == 422
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        assert anonymous.get("/admin/ui/analytics").status_code == 303  # to sign-in
        assert anonymous.post("/admin/ui/signout", data={}).status_code == 401
    forged = {"sb_console": cookies["sb_console"][:-4] + "AAAA"}
    with httpx.Client(base_url=server.url, cookies=forged, timeout=30) as forger:
        assert forger.get("/admin/ui/analytics").status_code == 303
    # A sign-in form's nonce is signed too, but for signing in only: as a session cookie it opens nothing.
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        nonce = re.search(r'name="csrf" value="([^"]+)"', anonymous.get("/admin/ui/signin").text)
        assert nonce is not None
    with httpx.Client(base_url=server.url, cookies={"sb_console": nonce[1]}, timeout=30) as replayer:
        assert replayer.get("/admin/ui/analytics").status_code == 303
        assert replayer.get("/admin/ui/transcript?channel=web&conversation=x").status_code == 303
