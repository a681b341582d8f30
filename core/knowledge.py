"""The knowledge bases as the admin surfaces manage them (/admin, MCP's listing, the demo's sample docs): list,
count, ingest, sync, delete. One object owning the store, the embedder that fills it and the settings ingestion
follows, so a surface is handed this instead of reaching into the assistant for its services.

The CLI's `ingest`/`kb`/`sync` commands open the store themselves (no assistant, no model) and call the same
core.ingest functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.config import Settings
from core.embed import Embedder
from core.ingest.lease import Lease
from core.ingest.pipeline import IngestReport, Progress, ingest_found
from core.ingest.registry import Registry, Source
from core.ingest.sources import Found
from core.ingest.sync import Synced, sync_source
from core.ingest.websync import ingest_inputs
from core.store.client import Store
from core.store.schema import DocumentInfo, KBStats


@dataclass(frozen=True)
class Knowledge:
    store: Store
    embedder: Embedder
    settings: Settings

    async def kbs(self) -> list[KBStats]:
        return await self.store.list_kbs()

    async def counts(self, kb: str) -> tuple[int, int]:
        """(documents, chunks); KBNotFound when nothing was ingested into `kb`."""
        return await self.store.counts(kb)

    async def documents(self, kb: str) -> list[DocumentInfo]:
        return await self.store.list_documents(kb)

    async def delete_document(self, kb: str, doc_id: str) -> str | None:
        """The deleted document's source, or None when the KB has no such document."""
        return await self.store.delete_document(kb, doc_id)

    async def ingest(
        self,
        inputs: Sequence[str],
        *,
        kb: str,
        prune: bool = False,
        crawl: Mapping[str, object] | None = None,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Files, directories, URLs or sitemaps, or with `crawl` (core.ingest.crawl.CrawlOptions) one start URL,
        as `switchboard ingest` takes them: unchanged web pages are skipped before download."""
        return await ingest_inputs(
            self.store,
            self.embedder,
            inputs,
            kb=kb,
            settings=self.settings,
            prune=prune,
            crawl=crawl,
            progress=progress,
        )

    async def ingest_found(self, found: Found, *, kb: str, progress: Progress | None = None) -> IngestReport:
        """Documents already read (uploads)."""
        return await ingest_found(self.store, self.embedder, found, kb=kb, settings=self.settings, progress=progress)

    async def sync(
        self, registry: Registry, source: Source, lease: Lease, *, progress: Progress | None = None
    ) -> Synced:
        """Re-ingest one registered source under its `lease` (core.ingest.sync.take_lease) and record the run in
        `registry`."""
        return await sync_source(
            registry, self.store, self.embedder, source, settings=self.settings, progress=progress, lease=lease
        )
