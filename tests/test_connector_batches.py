"""Connector bodies are fetched and ingested in bounded batches (never the whole source in memory), a sync stopped
between batches keeps what it stored and resumes with the rest, and a Drive file over FETCH_MAX_MB is skipped
from its listed size, never downloaded. Loopback Confluence and Drive fakes, real Weaviate, the real embedder."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from core.config import Settings
from core.embed import Embedder
from core.errors import IngestStopped
from core.ingest.connectors.sync import BATCH
from core.ingest.registry import Registry
from core.ingest.sync import sync_source
from core.store.client import Store
from tests.fakes import confluence_server, drive_server
from tests.fakes.confluence_server import FakeConfluence
from tests.fakes.drive_server import FakeDrive, Item
from tests.support.embedders import Wrapped
from tests.test_extract import make_pdf

PAGES = 2 * BATCH + 6  # three batches


def confluence(pages: int) -> tuple[FakeConfluence, dict[str, object]]:
    fake = FakeConfluence(max_limit=25).start()
    assert isinstance(fake, FakeConfluence)
    for n in range(pages):
        fake.add(str(1000 + n), "ENG", f"Runbook {n}", f"<p>Runbook {n}: restart the kestrel worker number {n}.</p>")
    account = {"confluence_url": fake.base_url, "confluence_user": confluence_server.USER}
    return fake, account | {"confluence_api_token": SecretStr(confluence_server.TOKEN)}


@dataclass
class OnEmbed(Wrapped):
    """Runs `call` (in the embedding thread) before the first batch is embedded."""

    call: Callable[[], None] = lambda: None
    calls: int = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        if self.calls == 1:
            self.call()
        return self.inner.embed_documents(texts)


async def test_bodies_are_fetched_in_batches_and_a_stopped_sync_resumes(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    fake, account = confluence(PAGES)
    try:
        registry = Registry(tmp_path / "sources.sqlite3")
        source = await registry.add(kb=kb, target="confluence:ENG", sitemap=False, prune=None, every=None)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        fetched_at_first_embed: list[int] = []

        def first_embed() -> None:  # the first batch is being embedded: ask the sync to stop (SIGTERM)
            fetched_at_first_embed.append(len(fake.body_fetches()))
            loop.call_soon_threadsafe(stop.set)

        watching = OnEmbed(embedder, call=first_embed)
        synced = settings.model_copy(update=account)
        try:
            await sync_source(registry, store, watching, source, settings=synced, stop=stop)
            raise AssertionError("the sync was not stopped")
        except IngestStopped as exc:
            assert f"stopped after {BATCH} documents" in str(exc)
        # Embedding began with at most two batches fetched (the next is fetched while one is embedded), not all.
        assert fetched_at_first_embed and fetched_at_first_embed[0] <= 2 * BATCH < PAGES
        assert (await store.counts(kb))[0] == BATCH  # the first batch, stored whole; nothing after it
        [stopped] = await registry.history(source.id)
        assert stopped.error is not None and "stopped after" in stopped.error

        before = len(fake.body_fetches())
        resumed = await sync_source(registry, store, embedder, source, settings=synced)
        assert resumed.run.error is None
        assert (resumed.run.documents, resumed.run.documents_unchanged, resumed.run.added) == (
            PAGES,
            BATCH,
            PAGES - BATCH,
        )
        assert len(fake.body_fetches()) - before == PAGES - BATCH  # the stored batch was not fetched again
        assert (await store.counts(kb))[0] == PAGES
    finally:
        fake.stop()


async def test_a_drive_file_over_the_limit_is_not_downloaded(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    fake = FakeDrive().start()
    assert isinstance(fake, FakeDrive)
    try:
        fake.items["root"] = Item("Handbook", drive_server.FOLDER_TYPE, "")
        fake.items["small"] = Item("Small manual", "application/pdf", "root", make_pdf(["Oil the hinges monthly."]))
        fake.items["big"] = Item("Big scan", "text/plain", "root", b"Scanned page. " * 20_000)  # 280 kB
        limit_mb = 0.1
        synced = settings.model_copy(
            update={
                "google_drive_endpoint": fake.endpoint,
                "google_service_account_file": fake.service_account_file(tmp_path),
                "fetch_max_mb": limit_mb,
            }
        )
        registry = Registry(tmp_path / "sources.sqlite3")
        source = await registry.add(kb=kb, target="drive:root", sitemap=False, prune=None, every=None)
        run = (await sync_source(registry, store, embedder, source, settings=synced)).run
        assert fake.content_fetches() == ["small"]  # the big one was judged by its listed size
        assert run.error is not None and "over FETCH_MAX_MB; not downloaded" in run.error, run.error
        assert "drive.google.com/file/d/big" in run.error
        assert run.added == 1
    finally:
        fake.stop()


async def test_an_updated_document_that_fails_to_extract_is_retried_on_the_next_sync(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    """Its stored state stays at the version still served, so the next sync fetches it again (not only a failed
    download: a body that downloads but does not extract too)."""
    fake = FakeDrive().start()
    assert isinstance(fake, FakeDrive)
    try:
        fake.items["root"] = Item("Handbook", drive_server.FOLDER_TYPE, "")
        fake.items["manual"] = Item("Manual", "application/pdf", "root", make_pdf(["Oil the hinges monthly."]))
        synced = settings.model_copy(
            update={
                "google_drive_endpoint": fake.endpoint,
                "google_service_account_file": fake.service_account_file(tmp_path),
            }
        )
        registry = Registry(tmp_path / "sources.sqlite3")
        source = await registry.add(kb=kb, target="drive:root", sitemap=False, prune=None, every=None)
        assert (await sync_source(registry, store, embedder, source, settings=synced)).run.added == 1
        fake.edit("manual", b"%PDF-1.7 this is not a readable PDF")
        broken = (await sync_source(registry, store, embedder, source, settings=synced)).run
        assert broken.error is not None and "drive.google.com/file/d/manual" in broken.error, broken.error
        fetches = len(fake.content_fetches())
        again = (await sync_source(registry, store, embedder, source, settings=synced)).run
        assert len(fake.content_fetches()) == fetches + 1, "the failed version was recorded as synced"
        assert again.error is not None  # still broken, still reported
        assert (await store.counts(kb))[0] == 1  # the version that extracted is still served
    finally:
        fake.stop()
