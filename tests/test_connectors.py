"""Connector sources (Confluence, Notion, Google Drive) synced into the real Weaviate with the real embedder, each
through its real client library against a loopback fake of the service's REST API: the first sync ingests every
listed document (across several listing pages), an unchanged second sync fetches no body and embeds nothing, an
edit re-embeds only that document, a deletion is pruned, documents cite the page's web address, and a bad token
or a missing permission is one clear line in the sync history."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docx
import pytest
from pydantic import SecretStr

from core.config import Settings
from core.embed import Embedder
from core.errors import IngestError, IngestStopped
from core.ingest.lease import SqliteLeases
from core.ingest.registry import Registry
from core.ingest.sync import sync_all, sync_source
from core.store.client import Store
from tests.fakes import confluence_server, drive_server, notion_server
from tests.fakes.confluence_server import FakeConfluence
from tests.fakes.drive_server import FakeDrive, Item
from tests.fakes.notion_server import DATABASE, FakeNotion, NotionPage
from tests.fakes.rest import FakeService
from tests.servers import RunningServer
from tests.test_admin_api import admin, call, post_json  # noqa: F401 - `admin` is a fixture
from tests.test_cli import one_line_error, run
from tests.test_extract import make_pdf
from tests.test_ingest import CountingEmbedder

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@dataclass
class Case:
    """One service as the shared scenario drives it."""

    fake: FakeService
    target: str
    settings: dict[str, Any]  # the service's account settings, pointing at the fake
    bad_token: dict[str, Any]
    forbid: Callable[[], None]
    edit: Callable[[str, str], None]  # (doc id, new text)
    delete: Callable[[str], None]
    fetched: Callable[[], list[str]]  # doc ids whose body was read, in order
    web_url: Callable[[str], str]  # doc id → the address users open
    ids: list[str]


def _confluence() -> Case:
    fake = FakeConfluence().start()
    assert isinstance(fake, FakeConfluence)
    ids = [str(100 + n) for n in range(5)]
    for n, page_id in enumerate(ids):
        fake.add(page_id, "ENG", f"Runbook {n}", f"<p>Runbook {n}: restart the kestrel worker number {n}.</p>")
    fake.add("900", "HR", "Holidays", "<p>Not in the synced space.</p>")
    account = {"confluence_url": fake.base_url, "confluence_user": confluence_server.USER}
    return Case(
        fake=fake,
        target="confluence:ENG",
        settings=account | {"confluence_api_token": SecretStr(confluence_server.TOKEN)},
        bad_token=account | {"confluence_api_token": SecretStr("expired")},
        forbid=lambda: fake.forbidden.add("ENG"),
        edit=lambda i, text: fake.edit(i, f"<p>{text}</p>"),
        delete=lambda i: fake.pages.pop(i) and None,
        fetched=fake.body_fetches,
        web_url=lambda i: f"{confluence_server.WEB_BASE}/spaces/ENG/pages/{i}",
        ids=ids,
    )


def _notion() -> Case:
    fake = FakeNotion().start()
    assert isinstance(fake, FakeNotion)
    ids = [f"{n:08d}-aaaa-bbbb-cccc-{n:012d}" for n in range(5)]
    for n, page_id in enumerate(ids):
        fake.pages[page_id] = NotionPage(f"Guide {n}", f"Guide {n}: the heron feeder opens at {n} o'clock.", DATABASE)
    return Case(
        fake=fake,
        target=f"notion:{DATABASE}",
        settings={"notion_base_url": fake.base_url, "notion_token": SecretStr(notion_server.TOKEN)},
        bad_token={"notion_base_url": fake.base_url, "notion_token": SecretStr("ntn_revoked")},
        forbid=lambda: fake.restricted.add(notion_server.DATA_SOURCE),
        edit=lambda i, text: fake.edit(i, text),
        delete=lambda i: fake.pages.pop(i) and None,
        fetched=fake.markdown_fetches,
        web_url=lambda i: f"https://www.notion.so/Guide-{ids.index(i)}-{i.replace('-', '')}",
        ids=ids,
    )


def _docx(text: str) -> bytes:
    document = docx.Document()
    document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _html(title: str, text: str) -> bytes:
    return f"<html><head><title>{title}</title></head><body><p>{text}</p></body></html>".encode()


def _drive(tmp_path: Path) -> Case:
    """A folder holding two Google Docs, a PDF, a DOCX, a PNG (not readable: left out) and a sub-folder with a
    third Doc; the scenario's five documents, listed two per page."""
    fake = FakeDrive().start()
    assert isinstance(fake, FakeDrive)
    fake.items["root"] = Item("Handbook", drive_server.FOLDER_TYPE, "")
    fake.items["sub"] = Item("Ops", drive_server.FOLDER_TYPE, "root")
    fake.items["doc-a"] = Item("Pager", drive_server.DOC_TYPE, "root", _html("Pager", "The pager rotates on Mondays."))
    fake.items["doc-b"] = Item("Deploys", drive_server.DOC_TYPE, "root", _html("Deploys", "Deploys freeze on Fridays."))
    fake.items["manual"] = Item("Field manual", "application/pdf", "root", make_pdf(["Oil the hinges monthly."], ""))
    fake.items["notes"] = Item("Notes", DOCX, "root", _docx("Badges open the loading dock."))
    fake.items["logo"] = Item("Logo", "image/png", "root", b"\x89PNG")
    fake.items["doc-c"] = Item(
        "Escalation", drive_server.DOC_TYPE, "sub", _html("Escalation", "Escalate after 30 minutes.")
    )
    account = {"google_drive_endpoint": fake.endpoint}
    return Case(
        fake=fake,
        target="drive:root",
        settings=account | {"google_service_account_file": fake.service_account_file(tmp_path)},
        bad_token=account
        | {"google_service_account_file": fake.service_account_file(tmp_path, drive_server.new_key())},
        forbid=lambda: fake.forbidden.add("root"),
        edit=lambda i, text: fake.edit(i, _html(fake.items[i].name, text)),
        delete=lambda i: fake.items.pop(i) and None,
        fetched=fake.content_fetches,
        web_url=lambda i: fake._meta(i)["webViewLink"],
        ids=["doc-a", "doc-b", "manual", "notes", "doc-c"],
    )


CASES: dict[str, Callable[[Path], Case]] = {
    "confluence": lambda _: _confluence(),
    "notion": lambda _: _notion(),
    "drive": _drive,
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    made = CASES[request.param](tmp_path)
    yield made
    made.fake.stop()


async def test_sync_fetches_only_what_changed_and_prunes_deletions(
    case: Case, tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    settings = settings.model_copy(update=case.settings)
    registry = Registry(tmp_path / "sources.sqlite3")
    source = await registry.add(kb=kb, target=case.target, sitemap=False, prune=None, every=None)
    assert source.kind == case.target.split(":")[0] and source.prune, "connectors prune by default"
    counting = CountingEmbedder(embedder)

    first = await sync_source(registry, store, counting, source, settings=settings)
    assert first.run.error is None, first.run.error
    assert (first.run.documents, first.run.added) == (5, 5)
    assert sorted(case.fetched()) == sorted(case.ids) and len(counting.texts) == 5
    stored = await store.stored_chunks(kb)
    assert {c.source for chunks in stored.values() for c in chunks.values()} == {case.web_url(i) for i in case.ids}

    case.fake.requests.clear()
    counting.texts.clear()
    again = await sync_source(registry, store, counting, source, settings=settings)
    assert (again.run.documents, again.run.documents_unchanged, again.run.added, again.run.error) == (5, 5, 0, None)
    assert case.fetched() == [] and counting.texts == []  # listed only: no body fetched, nothing embedded

    case.edit(case.ids[1], "Moved: the service now restarts itself every night.")
    case.delete(case.ids[3])
    case.fake.requests.clear()
    third = await sync_source(registry, store, counting, source, settings=settings)
    assert third.run.error is None, third.run.error
    assert (third.run.updated, third.run.documents_unchanged, third.run.documents_pruned) == (1, 3, 1)
    assert case.fetched() == [case.ids[1]]
    assert len(counting.texts) == 1 and "restarts itself every night" in counting.texts[0]
    sources = {c.source for chunks in (await store.stored_chunks(kb)).values() for c in chunks.values()}
    assert sources == {case.web_url(i) for i in case.ids if i != case.ids[3]}

    question = "restarts itself every night"
    hits = await store.search(kb, question, embedder.embed_query(question), alpha=0.75, limit=3)
    assert hits[0].source == case.web_url(case.ids[1])  # what a citation links to


async def test_bad_token_and_missing_permission_are_one_line_in_the_history(
    case: Case, tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    registry = Registry(tmp_path / "sources.sqlite3")
    source = await registry.add(kb=kb, target=case.target, sitemap=False, prune=None, every=None)
    refused = await sync_source(registry, store, embedder, source, settings=settings.model_copy(update=case.bad_token))
    assert refused.report is None and refused.run.error is not None
    assert "refused the credentials" in refused.run.error and "\n" not in refused.run.error
    assert re.search(r"check .*(API_TOKEN|NOTION_TOKEN|ACCOUNT_FILE)", refused.run.error)  # the setting to fix

    case.forbid()
    denied = await sync_source(registry, store, embedder, source, settings=settings.model_copy(update=case.settings))
    assert denied.report is None and denied.run.error is not None
    assert "no permission to read" in denied.run.error and "(HTTP 403)" in denied.run.error
    assert [r.error for r in await registry.history(source.id)] == [denied.run.error, refused.run.error]


async def test_an_unreachable_service_is_recorded_and_the_next_source_still_syncs(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    """A timeout or a refused connection from a client library is one failed run in the history (not an error
    that ends `sync_all` or leaves a scheduled source due on every tick)."""
    case = _notion()
    try:
        registry = Registry(tmp_path / "sources.sqlite3")
        down = await registry.add(kb=kb, target=case.target, sitemap=False, prune=None, every=None)
        folder = tmp_path / "docs"
        folder.mkdir()
        (folder / "owls.md").write_text("# Owls\n\nOwls hunt at night.\n")
        local = await registry.add(kb=kb, target=str(folder), sitemap=False, prune=False, every=None)
        unreachable = settings.model_copy(update={**case.settings, "notion_base_url": "http://127.0.0.1:9"})
        leases = SqliteLeases(tmp_path / "leases.sqlite3")
        (first, second), _ = await sync_all(
            registry, store, embedder, [down, local], leases, holder="test", settings=unreachable
        )
        assert first.report is None and first.run.error is not None and first.run.error.startswith("Notion: ")
        assert second.report is not None and second.run.documents == 1
        assert [r.error for r in await registry.history(down.id)] == [first.run.error]
    finally:
        case.fake.stop()


async def test_missing_account_settings_are_named(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    registry = Registry(tmp_path / "sources.sqlite3")
    for target, variable in (
        ("confluence:ENG", "CONFLUENCE_URL"),
        ("notion:abc", "NOTION_TOKEN"),
        ("drive:abc", "GOOGLE_SERVICE_ACCOUNT_FILE"),
    ):
        source = await registry.add(kb=kb, target=target, sitemap=False, prune=None, every=None)
        synced = await sync_source(registry, store, embedder, source, settings=settings)
        assert synced.run.error is not None and variable in synced.run.error


@pytest.mark.parametrize(
    ("target", "message"),
    [("confluence:", "expected KIND:ID"), ("notion:a/b", "expected KIND:ID"), ("drive:x y", "expected KIND:ID")],
)
async def test_bad_connector_targets_are_refused(tmp_path: Path, target: str, message: str) -> None:
    registry = Registry(tmp_path / "sources.sqlite3")
    with pytest.raises(IngestError, match=message):
        await registry.add(kb="docs", target=target, sitemap=False, prune=None, every=None)
    with pytest.raises(IngestError, match="--sitemap"):
        await registry.add(kb="docs", target="notion:abc", sitemap=True, prune=None, every=None)
    kept = await registry.add(kb="docs", target="notion:abc", sitemap=False, prune=False, every=None)
    assert not kept.prune, "pruning can be turned off"


async def test_notion_page_with_sub_pages_and_a_renamed_page(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    """A page id (not a database): the page and its sub-pages, depth first across paginated block lists. A renamed
    page moves to a new URL (Notion's URLs carry the title): the old address is pruned, the new one ingested."""
    fake = FakeNotion().start()
    assert isinstance(fake, FakeNotion)
    root = "11111111-0000-0000-0000-000000000000"
    fake.pages[root] = NotionPage("Handbook", "The handbook's front page.", "workspace")
    for n in range(3):
        fake.pages[f"22222222-0000-0000-0000-00000000000{n}"] = NotionPage(f"Chapter {n}", f"Chapter {n} text.", root)
    fake.pages["33333333-0000-0000-0000-000000000000"] = NotionPage(
        "Appendix", "Appendix text.", "22222222-0000-0000-0000-000000000001"
    )
    try:
        settings = settings.model_copy(
            update={"notion_base_url": fake.base_url, "notion_token": SecretStr(notion_server.TOKEN)}
        )
        registry = Registry(tmp_path / "sources.sqlite3")
        source = await registry.add(kb=kb, target=f"notion:{root}", sitemap=False, prune=None, every=None)
        first = await sync_source(registry, store, embedder, source, settings=settings)
        assert (first.run.documents, first.run.error) == (5, None)
        titles = {d.title for d in await store.list_documents(kb)}
        assert titles == {"Handbook", "Chapter 0", "Chapter 1", "Chapter 2", "Appendix"}

        fake.edit("22222222-0000-0000-0000-000000000002", "Chapter 2 text.", title="Closing chapter")
        fake.requests.clear()
        renamed = await sync_source(registry, store, embedder, source, settings=settings)
        assert (renamed.run.added, renamed.run.documents_pruned, renamed.run.documents_unchanged) == (1, 1, 4)
        assert fake.markdown_fetches() == ["22222222-0000-0000-0000-000000000002"]
        sources = {d.source for d in await store.list_documents(kb)}
        assert "https://www.notion.so/Closing-chapter-22222222000000000000000000000002" in sources
        assert not any("Chapter-2" in s for s in sources)
    finally:
        fake.stop()


def test_cli_adds_and_syncs_a_connector(cli_env: dict[str, str], tmp_path: Path, kb: str) -> None:
    fake = _confluence()
    env = cli_env | {
        "CONFLUENCE_URL": fake.fake.base_url,
        "CONFLUENCE_USER": confluence_server.USER,
        "CONFLUENCE_API_TOKEN": confluence_server.TOKEN,
    }
    try:
        one_line_error(run(env, "source", "add", "--kb", kb, "confluence:E N G", cwd=tmp_path), "expected KIND:ID")
        added = run(env, "source", "add", "--kb", kb, "confluence:ENG", "--every", "1h", cwd=tmp_path)
        assert added.returncode == 0, added.stderr
        assert "confluence confluence:ENG" in added.stdout
        synced = run(env, "sync", "--kb", kb, cwd=tmp_path)
        assert synced.returncode == 0, synced.stderr
        assert "5 documents (0 unchanged); chunks 5 added" in synced.stdout.replace("\n", " ")
        again = run(env, "sync", "--kb", kb, cwd=tmp_path)
        assert "5 documents (5 unchanged); chunks 0 added" in again.stdout.replace("\n", " ")
        listed = json.loads(run(env, "source", "list", "--kb", kb, "--json", cwd=tmp_path).stdout)["sources"]
        assert [(s["kind"], s["prune"], s["every"]) for s in listed] == [("confluence", True, "1h")]

        refused = run(env | {"CONFLUENCE_API_TOKEN": "expired"}, "sync", "--kb", kb, cwd=tmp_path)
        one_line_error(refused, "1 of 1 source(s) failed")
        assert "Confluence refused the credentials (HTTP 401)" in refused.stdout.replace("\n", " ")
    finally:
        fake.fake.stop()


def test_admin_api_registers_connectors(admin: RunningServer, kb: str) -> None:  # noqa: F811
    added = call(admin, "POST", f"/admin/kbs/{kb}/sources", json={"target": f"notion:{DATABASE}", "every": "6h"})
    assert added.status_code == 201, added.text
    assert (added.json()["kind"], added.json()["prune"]) == ("notion", True)
    kept = call(admin, "POST", f"/admin/kbs/{kb}/sources", json={"target": "drive:folder-1", "prune": False})
    assert kept.status_code == 201 and not kept.json()["prune"], kept.text
    refused = post_json(admin, f"/admin/kbs/{kb}/sources", {"target": "confluence:a b"})
    assert refused.status_code == 400 and "expected KIND:ID" in refused.json()["detail"], refused.text


async def test_a_stop_while_fetching_writes_nothing_and_is_recorded(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    case = _confluence()
    try:
        registry = Registry(tmp_path / "sources.sqlite3")
        source = await registry.add(kb=kb, target=case.target, sitemap=False, prune=None, every=None)
        stop = asyncio.Event()
        stop.set()  # SIGTERM arrived: the listing is read, no body is fetched
        with pytest.raises(IngestStopped, match="stopped while fetching"):
            await sync_source(
                registry, store, embedder, source, settings=settings.model_copy(update=case.settings), stop=stop
            )
        assert case.fetched() == [] and case.fake.paths() != []
        assert "stopped while fetching" in ((await registry.history(source.id))[0].error or "")
        resumed = await sync_source(
            registry, store, embedder, source, settings=settings.model_copy(update=case.settings)
        )
        assert (resumed.run.documents, resumed.run.added, resumed.run.error) == (5, 5, None)
    finally:
        case.fake.stop()
