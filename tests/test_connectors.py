"""Connector sources (Confluence, Notion, Google Drive) synced into the real Weaviate with the real embedder, each
through its real client library against a loopback fake of the service's REST API: the first sync ingests every
listed document (across several listing pages), an unchanged second sync fetches no body and embeds nothing, an
edit re-embeds only that document, a deletion is pruned, documents cite the page's web address, and a bad token
or a missing permission is one clear line in the sync history."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.config import Settings
from core.embed import Embedder
from core.errors import IngestError
from core.ingest.registry import Registry
from core.ingest.sync import sync_source
from core.store.client import Store
from tests.fakes import confluence_server, notion_server
from tests.fakes.confluence_server import FakeConfluence
from tests.fakes.notion_server import DATABASE, FakeNotion, NotionPage
from tests.fakes.rest import FakeService
from tests.test_ingest import CountingEmbedder


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


CASES = {"confluence": _confluence, "notion": _notion}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    made = CASES[request.param]()
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
    assert "refused the credentials (HTTP 401)" in refused.run.error and "\n" not in refused.run.error
    assert "TOKEN" in refused.run.error  # names the setting to fix

    case.forbid()
    denied = await sync_source(registry, store, embedder, source, settings=settings.model_copy(update=case.settings))
    assert denied.report is None and denied.run.error is not None
    assert "no permission to read" in denied.run.error and "(HTTP 403)" in denied.run.error
    assert [r.error for r in await registry.history(source.id)] == [denied.run.error, refused.run.error]


async def test_missing_account_settings_are_named(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    registry = Registry(tmp_path / "sources.sqlite3")
    for target, variable in (("confluence:ENG", "CONFLUENCE_URL"), ("notion:abc", "NOTION_TOKEN")):
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
