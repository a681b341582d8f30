"""A web source (crawl or sitemap) streamed into the pipeline: each batch of pages is ingested as it arrives, so
memory holds one batch of bodies, whatever the site's size. Prune runs once at the end with the ids of the
documents seen (read, unchanged, or failed this time), never with their bodies. A page's validators are recorded
only after its batch is stored, so a sync killed in between downloads it again."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from core.config import Settings
from core.embed import Embedder
from core.errors import IngestError, IngestStopped, KBNotFound, StoreError
from core.ingest.crawl import Batch, CrawlOptions, WebReader, url_key
from core.ingest.egress import ingest_client
from core.ingest.lock import kb_write_lock
from core.ingest.pipeline import IngestReport, Progress, doc_id_for, ingest, ingest_found, prune_except
from core.ingest.registry import Registry
from core.ingest.sources import Found, check_url, is_url
from core.ingest.validators import Validators
from core.store.client import Store

logger = logging.getLogger(__name__)


async def _drop(store: Store, kb: str, settings: Settings, sources: list[str]) -> int:
    """Remove the documents of pages that now say noindex, whether or not the sync prunes: the site asked."""
    dropped = 0
    async with kb_write_lock(settings, kb):
        for source in sources:
            try:
                dropped += await store.delete_document(kb, doc_id_for(source)) is not None
            except KBNotFound:  # a first crawl: nothing stored yet
                return 0
    return dropped


async def _ahead(batches: AsyncIterator[Batch]) -> AsyncIterator[Batch]:
    """The next batch is fetched while this one is embedded: two batches in memory at most."""
    queue: asyncio.Queue[Batch | BaseException | None] = asyncio.Queue(maxsize=1)

    async def produce() -> None:
        try:
            async for batch in batches:
                await queue.put(batch)
            await queue.put(None)
        except Exception as exc:  # handed to the consumer, raised there
            await queue.put(exc)

    task = asyncio.create_task(produce())
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def ingest_web(
    store: Store,
    embedder: Embedder,
    *,
    kb: str,
    kind: str,
    target: str,
    options: dict[str, object],
    prune: bool,
    settings: Settings,
    validators: Path | None = None,
    source_id: str | None = None,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> IngestReport:
    """Crawl `target` (kind "crawl", with its CrawlOptions), read the sitemap at `target` (kind "sitemap"), or
    either the sitemap or the page at `target` (kind "url"). With a registry database (`validators`) and a
    `source_id`, unchanged pages are skipped before download."""
    check_url(target)
    crawl = CrawlOptions.parse(options) if kind == "crawl" else None
    started = time.perf_counter()
    store_of = None if validators is None or source_id is None else Validators(validators, source_id)
    known = await store_of.load() if store_of is not None else {}
    if known:  # a validator is trusted only while its document is stored (a KB deleted since must be re-read)
        try:
            present = set(await store.stored_chunks(kb))
        except StoreError:
            present = set()
        known = {k: seen for k, seen in known.items() if doc_id_for(seen.source) in present}
    total = IngestReport()
    keep: set[str] = set()
    complete = True
    async with ingest_client(settings) as client:
        reader = WebReader(
            client, settings, origin=target, known=known, links=store_of.links if store_of is not None else None
        )
        pages = reader.crawl(target, crawl) if crawl else reader.sitemap(target) if kind == "sitemap" else None
        batches = _ahead(pages or reader.url(target))
        async for batch in batches:
            complete = complete and not batch.incomplete
            keep.update(doc_id_for(source) for source in (*batch.kept, *(d.source for d in batch.docs)))
            total.documents += batch.skipped  # unchanged pages are documents of the source too
            total.documents_unchanged += batch.skipped
            total.documents_skipped += batch.skipped
            if batch.docs:
                found = Found(docs=batch.docs, failures=batch.failures)
                part = await ingest_found(
                    store, embedder, found, kb=kb, settings=settings, progress=progress, stop=stop
                )
                total.include(part)
            else:
                total.failures.extend(batch.failures)
            if batch.noindex:
                total.documents_pruned += await _drop(store, kb, settings, batch.noindex)
            if store_of is not None:
                await store_of.save(batch.seen)
                await store_of.forget(batch.forget)
            if stop is not None and stop.is_set():
                raise IngestStopped(
                    f"stopped after {total.documents} documents (each document stored is complete); "
                    "run the same sync again to finish"
                )
    if prune and not complete:
        logger.warning("%s: part of it could not be listed; nothing pruned this time", target)
    elif prune:
        total.include(await prune_except(store, kb, settings=settings, origins={target}, keep=keep))
    total.seconds = time.perf_counter() - started
    return total


def unregistered_id(kb: str, kind: str, target: str) -> str:
    """The validators' key of a web target ingested without registering it (`switchboard ingest URL`, admin
    /urls): one per KB, kind and page, so the same command run again skips what did not change. The kind is
    part of it: a crawl records a page's links, a single-page read does not."""
    digest = hashlib.sha256(f"{kb}\n{kind}\n{url_key(target)}".encode()).hexdigest()[:16]
    return f"ingest-{digest}"


async def ingest_inputs(
    store: Store,
    embedder: Embedder,
    inputs: Sequence[str],
    *,
    kb: str,
    settings: Settings,
    prune: bool = False,
    crawl: Mapping[str, object] | None = None,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> IngestReport:
    """What `switchboard ingest` and admin /urls take: files and folders are ingested as they always were; each
    URL (a page, a file, a sitemap, or with `crawl` options the start of a crawl) is streamed like a registered
    web source, its pages' validators kept in the sources database, so a second run asks for them conditionally
    (304: not downloaded, not embedded). Every input is checked before anything is fetched or written."""
    urls, paths = [i for i in inputs if is_url(i)], [i for i in inputs if not is_url(i)]
    for url in urls:
        check_url(url)
    for path in paths:
        if not Path(path).expanduser().exists():
            raise IngestError(f"{path}: no such file or directory")
    kind = "url" if crawl is None else "crawl"
    options = dict(crawl or {})
    if crawl is not None:
        CrawlOptions.parse(options)
    started = time.perf_counter()
    total = IngestReport()
    if paths:
        total.include(
            await ingest(store, embedder, paths, kb=kb, settings=settings, prune=prune, progress=progress, stop=stop)
        )
    registry = Registry.for_settings(settings).path
    for url in urls:
        part = await ingest_web(
            store,
            embedder,
            kb=kb,
            kind=kind,
            target=url,
            options=options,
            prune=prune,
            settings=settings,
            validators=registry,
            source_id=unregistered_id(kb, kind, url),
            progress=progress,
            stop=stop,
        )
        total.include(part)
    total.seconds = time.perf_counter() - started
    return total
