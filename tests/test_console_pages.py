"""The console's htmx paths in the real browser (Playwright + Chromium) against the real server: a KB's registered
sources with their last sync and "re-sync now", conversation search and pagination, curated answers and promote.
Each action must update the page in place (a marker set on `window` survives: no full reload) and still work as a
plain form without JavaScript (httpx posts the same forms). The server and its answer log are test_admin_stats's."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from playwright.async_api import Page, expect

from core.answer.log import AnswerLog
from tests.servers import RunningServer
from tests.support.answer_log import Row, insert
from tests.test_admin_stats import KEY, server  # noqa: F401  (the server fixture, with its answer log)
from tests.test_console_browser import axe_violations, context, signed_in, until_jobs_done  # noqa: F401
from tests.test_widget_browser import browser  # noqa: F401  (the session's Chromium)

ADMIN = {"Authorization": f"Bearer {KEY}"}


async def mark(page: Page) -> None:
    """Set a marker a full page load would lose."""
    await page.evaluate("window.__noReload = true")


async def still_marked(page: Page) -> None:
    assert await page.evaluate("window.__noReload === true"), "the page was reloaded, not updated in place"


@asynccontextmanager
async def session_client(server: RunningServer, page: Page) -> AsyncIterator[tuple[httpx.Client, str]]:  # noqa: F811
    """A plain HTTP client (no JavaScript) with the page's session, and the session's CSRF token."""
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    with httpx.Client(base_url=server.url, cookies=cookies, timeout=30) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/admin/ui/keys").text)
        assert token is not None
        yield client, token[1]


async def test_sources_last_sync_and_resync(
    signed_in: tuple[Page, list[str]],  # noqa: F811
    server: RunningServer,  # noqa: F811
    host_site: tuple[str, Path],
) -> None:
    origin, root = host_site
    (root / "console-sync.html").write_text(
        "<html><head><title>Repotting ferns</title></head><body><main><h1>Repotting ferns</h1>"
        "<p>Repot ferns in spring into a pot one size larger.</p></main></body></html>"
    )
    kb = f"t_sources_{uuid.uuid4().hex[:8]}"
    good = httpx.post(
        f"{server.url}/admin/kbs/{kb}/sources", json={"target": f"{origin}/console-sync.html"}, headers=ADMIN
    )
    bad = httpx.post(f"{server.url}/admin/kbs/{kb}/sources", json={"target": f"{origin}/gone.html"}, headers=ADMIN)
    assert good.status_code == bad.status_code == 201, (good.text, bad.text)
    page, errors = signed_in
    await page.goto(f"{server.url}/admin/ui/kbs/{kb}")
    sources = page.get_by_test_id("sources")
    await expect(sources.locator("tbody tr")).to_have_count(2)
    await expect(sources.locator("tr", has_text="console-sync.html")).to_contain_text("never")
    await mark(page)

    await sources.get_by_role("button", name=f"Re-sync now: {origin}/console-sync.html").click()
    await expect(page.get_by_test_id("jobs")).to_contain_text("sync")
    await still_marked(page)
    await sources.get_by_role("button", name=f"Re-sync now: {origin}/gone.html").click()
    await expect(page.get_by_test_id("jobs").locator("tbody tr")).to_have_count(2)
    await until_jobs_done(page)
    synced = page.get_by_test_id("sources").locator("tr", has_text="console-sync.html")
    await expect(synced).to_contain_text("ok: 1 documents")
    await expect(page.get_by_test_id("documents")).to_contain_text("Repotting ferns")
    await expect(page.get_by_test_id("sources").locator("tr", has_text="gone.html")).to_contain_text("failed")
    assert await axe_violations(page) == {}
    assert errors == []

    # Without JavaScript: the same form, posted plainly, redirects back to the KB; a wrong token or a source of
    # another KB (or an unknown one) is refused with its reason.
    source_id = good.json()["id"]
    async with session_client(server, page) as (client, csrf):
        resync = client.post(f"/admin/ui/kbs/{kb}/sources/{source_id}/sync", data={"csrf": csrf})
        assert resync.status_code == 303 and resync.headers["location"] == f"/admin/ui/kbs/{kb}"
        assert client.post(f"/admin/ui/kbs/{kb}/sources/{source_id}/sync", data={}).status_code == 403
        forged = client.post(f"/admin/ui/kbs/{kb}/sources/{source_id}/sync", data={"csrf": "forged"})
        assert forged.status_code == 403 and "CSRF" in forged.json()["detail"]
        other = client.post(f"/admin/ui/kbs/t_unknown_kb/sources/{source_id}/sync", data={"csrf": csrf})
        assert other.status_code == 404 and source_id in other.json()["detail"]
        assert client.post(f"/admin/ui/kbs/{kb}/sources/{'0' * 12}/sync", data={"csrf": csrf}).status_code == 404
        assert client.post(f"/admin/ui/kbs/{kb}/sources/nothex/sync", data={"csrf": csrf}).status_code == 422
        assert client.post(f"/admin/ui/kbs/Bad-KB/sources/{source_id}/sync", data={"csrf": csrf}).status_code == 422
        await until_jobs_done(page)  # the plain re-sync's job, before the KB's Weaviate data is left behind


async def test_conversation_search_and_pages(
    signed_in: tuple[Page, list[str]],  # noqa: F811
    server: RunningServer,  # noqa: F811
) -> None:
    # 60 more conversations of the docs bot (this module's own server and log): two pages of 50.
    log = AnswerLog(server.settings.data_dir / "answers.sqlite3")
    now = time.time()
    insert(log, [Row(question=f"Paging question {i:02d}", created_at=now - 600 - i, bot="docs") for i in range(60)])
    page, errors = signed_in
    await page.get_by_role("link", name="Conversations").click()
    await mark(page)
    await page.get_by_label("Bot").select_option("docs")
    await page.get_by_role("button", name="Show").click()
    listed = page.get_by_test_id("conversations")
    await expect(listed.locator("tbody tr")).to_have_count(50)
    await expect(listed.locator("tbody tr").first).to_contain_text("Other")  # the latest
    await page.get_by_role("link", name="Next page").click()
    await expect(page).to_have_url(re.compile(r"page=2"))
    await expect(listed.locator("tbody tr")).to_have_count(11)  # 61 in all
    await expect(listed).to_contain_text("Paging question 59")
    await expect(page.get_by_role("link", name="Next page")).to_have_count(0)
    await still_marked(page)
    assert await axe_violations(page) == {}

    await page.get_by_label("Bot").select_option("closed")
    await page.get_by_label("Text in a question or answer").fill("ENTERPRISE")
    await page.get_by_role("button", name="Show").click()
    await expect(listed.locator("tbody tr")).to_have_count(2)
    await expect(listed).to_contain_text("How much is the enterprise price?")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    await page.get_by_label("Text in a question or answer").fill("")
    await page.get_by_label("From").fill(time.strftime("%Y-%m-%d", time.gmtime(now - 10 * 86400)))
    await page.get_by_label("to", exact=True).fill(today)
    await page.get_by_role("button", name="Show").click()
    await expect(listed).not_to_contain_text("Long ago")  # 30 days ago: outside the range
    await expect(listed.locator("tbody tr")).to_have_count(4)
    await still_marked(page)
    assert errors == []

    # A bad range is refused with its reason, shown on the page (htmx does not swap the refusal in).
    await page.get_by_label("From").fill(today)
    await page.get_by_label("to", exact=True).fill(time.strftime("%Y-%m-%d", time.gmtime(now - 3 * 86400)))
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#flash")).to_have_text("Refused (422): until: the range ends before it starts")
    await expect(listed.locator("tbody tr")).to_have_count(4)  # the last results stay
    # Chromium and htmx both log the refused request; nothing else logs an error.
    assert errors == [
        "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)",
        "Response Status Error Code 422 from /admin/ui/conversations, [object HTMLDivElement]",
    ]

    # Without JavaScript: plain GETs; bad parameters are 4xx with a reason.
    async with session_client(server, page) as (client, _):
        plain = client.get("/admin/ui/conversations", params={"bot": "closed", "q": "install"})
        assert plain.status_code == 200 and plain.text.count("How do I install it?") == 2
        for params, status, reason in (
            ({"bot": "nobody"}, 404, "nobody"),
            ({"bot": "docs", "since": "06/12/2026"}, 422, "since"),
            ({"bot": "docs", "since": "2026-02-30"}, 422, "not a date"),
            ({"bot": "docs", "since": "2026-03-02", "until": "2026-03-01"}, 422, "ends before"),
            ({"bot": "docs", "page": "0"}, 422, "page"),
            ({"bot": "docs", "page": "x"}, 422, "page"),
            ({"bot": "docs", "q": "x" * 201}, 422, "q"),
        ):
            refused = client.get("/admin/ui/conversations", params=params)
            assert refused.status_code == status and reason in str(refused.json()["detail"]), (params, refused.text)
        beyond = client.get("/admin/ui/conversations", params={"bot": "docs", "page": "99"})
        assert beyond.status_code == 200 and "No conversations with this bot" in beyond.text


async def test_curated_answers_and_promote(
    signed_in: tuple[Page, list[str]],  # noqa: F811
    server: RunningServer,  # noqa: F811
) -> None:
    page, errors = signed_in
    await page.get_by_role("link", name="Feedback").click()  # the header's links load whole pages
    await mark(page)
    await page.get_by_role("link", name="Promote: How much is the enterprise price?").click()
    await expect(page.get_by_test_id("record")).to_contain_text("How much is the enterprise price?")
    assert await axe_violations(page) == {}
    await page.get_by_label("Correct answer (Markdown)").fill("Enterprise is 900 EUR a month.")
    await page.get_by_label("Paraphrases, one a line").fill("What does enterprise cost?\nEnterprise pricing?")
    await page.get_by_role("button", name="Promote").click()
    await expect(page).to_have_url(f"{server.url}/admin/ui/curated?bot=closed")
    table = page.get_by_test_id("curated")
    row = table.locator("tr", has_text="How much is the enterprise price?")
    await expect(row).to_contain_text("Enterprise is 900 EUR a month.")
    await expect(row).to_contain_text("Enterprise pricing?")
    await expect(row).to_contain_text("install.md")  # the sources the promoted answer cited, kept
    await expect(row).to_contain_text("promoted from a logged answer")
    await still_marked(page)
    api = httpx.get(f"{server.url}/admin/curated", params={"bot": "closed"}, headers=ADMIN).json()["curated"]
    assert [(c["question"], c["answer"], c["paraphrases"]) for c in api] == [
        (
            "How much is the enterprise price?",
            "Enterprise is 900 EUR a month.",
            ["What does enterprise cost?", "Enterprise pricing?"],
        )
    ]

    await row.get_by_text("Edit").click()
    await row.get_by_label("Answer (Markdown)").fill("Enterprise is 950 EUR a month.")
    await row.get_by_label("Paraphrases, one a line").fill("Enterprise pricing?")
    await row.get_by_role("button", name="Save").click()
    await expect(table.locator("tr", has_text="How much is the enterprise price?")).to_contain_text("950 EUR")
    await expect(table).not_to_contain_text("What does enterprise cost?")

    await page.get_by_label("Question", exact=True).last.fill("Is there a free tier?")
    await page.get_by_label("Answer (Markdown)").last.fill("Yes: up to 100 questions a day.")
    await page.get_by_role("button", name="Add curated answer").click()
    await expect(table.locator("tbody tr")).to_have_count(2)
    assert await axe_violations(page) == {}
    await table.get_by_role("button", name="Delete: How much is the enterprise price?").click()
    await expect(table.locator("tbody tr")).to_have_count(1)
    await expect(table).to_contain_text("Is there a free tier?")
    await still_marked(page)
    assert errors == []

    # Without JavaScript, and the refusals: CSRF, unknown bot, answer or curated answer, an empty answer.
    (left,) = httpx.get(f"{server.url}/admin/curated", headers=ADMIN).json()["curated"]
    logged = "0" * 32
    async with session_client(server, page) as (client, csrf):
        added = client.post("/admin/ui/curated", data={"csrf": csrf, "bot": "docs", "question": "Q?", "answer": "A."})
        assert added.status_code == 303 and added.headers["location"] == "/admin/ui/curated?bot=docs"
        for path, data, status, reason in (
            ("/admin/ui/curated", {"bot": "docs", "question": "Q", "answer": "A"}, 403, "CSRF"),
            ("/admin/ui/curated", {"csrf": "forged", "bot": "docs", "question": "Q", "answer": "A"}, 403, "CSRF"),
            (f"/admin/ui/curated/{left['id']}/delete", {}, 403, "CSRF"),
            (f"/admin/ui/answers/{logged}/promote", {"answer": "A"}, 403, "CSRF"),
            ("/admin/ui/curated", {"csrf": csrf, "bot": "nobody", "question": "Q", "answer": "A"}, 404, "nobody"),
            ("/admin/ui/curated", {"csrf": csrf, "bot": "docs", "question": "Q", "answer": ""}, 422, "answer"),
            (f"/admin/ui/curated/{left['id']}/edit", {"csrf": csrf, "question": "Q", "answer": ""}, 422, "answer"),
            (f"/admin/ui/curated/{logged}/edit", {"csrf": csrf, "question": "Q", "answer": "A"}, 404, logged),
            (f"/admin/ui/curated/{logged}/delete", {"csrf": csrf}, 404, logged),
            (f"/admin/ui/answers/{logged}/promote", {"csrf": csrf, "answer": "A"}, 404, logged),
            ("/admin/ui/answers/not-an-id/promote", {"csrf": csrf, "answer": "A"}, 422, "answer_id"),
        ):
            refused = client.post(path, data=data)
            assert refused.status_code == status and reason in str(refused.json()["detail"]), (path, refused.text)
        assert client.get(f"/admin/ui/answers/{logged}/promote").status_code == 404
    assert len(httpx.get(f"{server.url}/admin/curated", headers=ADMIN).json()["curated"]) == 2  # nothing else
