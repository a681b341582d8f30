"""Syncing registered sources: each one is the incremental ingest of its target (unchanged documents cost no
embedding; with prune, documents gone from it are removed), under the KB's write lock as every ingest, and its
result is recorded in the source's history. One failing source does not stop the others.

Every sync of a source (scheduled, `switchboard sync`, the admin API's) runs under the source's lease
(core.ingest.lease), so two processes never sync one source at once; a sync whose lease is lost meanwhile stops
at the next document boundary and is recorded as failed, saying so."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from core.config import Settings
from core.embed import Embedder
from core.errors import IngestError, IngestStopped, SwitchboardError
from core.ingest.connectors import CONNECTOR_KINDS
from core.ingest.connectors.sync import sync_connector
from core.ingest.lease import Lease, Leases
from core.ingest.pipeline import IngestReport, Progress, ingest
from core.ingest.registry import Registry, Source, SyncRun
from core.ingest.websync import ingest_web
from core.metrics import SYNCS
from core.store.client import Store

logger = logging.getLogger(__name__)

WEB_KINDS = ("crawl", "sitemap", "url")


class SourceBusy(IngestError):
    """Another process holds the source's lease: it is syncing it now."""

    def __init__(self, source: Source):
        super().__init__(f"source {source.id} is being synced by another process; try again when it has finished")
        self.source = source


def lease_name(source_id: str) -> str:
    return f"sync:{source_id}"


async def take_lease(leases: Leases, source: Source, holder: str) -> Lease:
    """The source's lease, renewed until released; SourceBusy if another process holds it."""
    held = await Lease.take(leases, lease_name(source.id), holder)
    if held is None:
        raise SourceBusy(source)
    return held


@asynccontextmanager
async def _either(stop: asyncio.Event | None, lost: asyncio.Event) -> AsyncIterator[asyncio.Event]:
    """One event, set as soon as `stop` (SIGTERM, a closing scheduler) or `lost` (the lease) is."""
    either = asyncio.Event()
    if any(e is not None and e.is_set() for e in (stop, lost)):
        either.set()
    waits = [asyncio.create_task(e.wait()) for e in (stop, lost) if e is not None]
    relay = asyncio.create_task(asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED))
    relay.add_done_callback(lambda _: either.set())
    try:
        yield either
    finally:
        for task in (relay, *waits):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(relay, *waits, return_exceptions=True)


@dataclass(frozen=True)
class Synced:
    source: Source
    run: SyncRun  # as recorded
    report: IngestReport | None  # None: the source failed as a whole (run.error says why)


def _failures(report: IngestReport) -> str | None:
    """Documents inside a source (a folder's files, a sitemap's pages) that could not be read: the sync did the
    rest, and says so."""
    if not report.failures:
        return None
    where, reason = report.failures[0]
    more = f" (and {len(report.failures) - 1} more)" if len(report.failures) > 1 else ""
    return f"{where}: {reason}{more}"


async def _record_failure(registry: Registry, source: Source, started: float, error: str) -> SyncRun:
    failed = SyncRun.of(started, None, error)
    SYNCS.labels("failed").inc()
    await registry.record(source.id, failed)
    return failed


async def sync_source(
    registry: Registry,
    store: Store,
    embedder: Embedder,
    source: Source,
    *,
    settings: Settings,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
    lease: Lease | None = None,
) -> Synced:
    """Sync one source and record the run, its error included. A stop (SIGTERM) is recorded too, then raised as
    IngestStopped: the next sync repairs what it left. With the source's `lease`, losing it stops the sync too,
    recorded as a failure (not raised: the other sources still sync)."""
    if lease is None:
        return await _sync(registry, store, embedder, source, settings=settings, progress=progress, stop=stop)
    async with _either(stop, lease.lost) as halt:
        return await _sync(
            registry, store, embedder, source, settings=settings, progress=progress, stop=halt, lease=lease
        )


async def _sync(
    registry: Registry,
    store: Store,
    embedder: Embedder,
    source: Source,
    *,
    settings: Settings,
    progress: Progress | None,
    stop: asyncio.Event | None,
    lease: Lease | None = None,
) -> Synced:
    started = time.time()
    try:
        if source.kind in CONNECTOR_KINDS:
            report = await sync_connector(
                registry, store, embedder, source, settings=settings, progress=progress, stop=stop
            )
        elif source.kind in WEB_KINDS:  # streamed page by page, unchanged pages skipped before download
            report = await ingest_web(
                store,
                embedder,
                kb=source.kb,
                kind=source.kind,
                target=source.target,
                options=source.options,
                prune=source.prune,
                settings=settings,
                validators=registry.path,
                source_id=source.id,
                progress=progress,
                stop=stop,
            )
        else:
            report = await ingest(
                store,
                embedder,
                [source.target],
                kb=source.kb,
                settings=settings,
                prune=source.prune,
                progress=progress,
                stop=stop,
            )
    except SwitchboardError as exc:
        if isinstance(exc, IngestStopped) and lease is not None and lease.lost.is_set():
            error = f"stopped: the source's lease was lost to another process ({exc})"
            logger.error("source %s (%s) %s", source.id, source.target, error)
            return Synced(source, await _record_failure(registry, source, started, error), None)
        failed = await _record_failure(registry, source, started, str(exc))
        if isinstance(exc, IngestStopped):
            raise
        logger.warning("source %s (%s) failed: %s", source.id, source.target, exc)
        return Synced(source, failed, None)
    except Exception as exc:  # a library's surprise: recorded like any failure, so the schedule moves on
        logger.exception("source %s (%s) failed unexpectedly", source.id, source.target)
        error = f"unexpected error ({exc.__class__.__name__}); see the log"
        return Synced(source, await _record_failure(registry, source, started, error), None)
    run = SyncRun.of(started, report, _failures(report))
    SYNCS.labels("ok" if run.error is None else "partial").inc()  # partial: some pages of the source failed
    await registry.record(source.id, run)
    return Synced(source, run, report)


async def sync_all(
    registry: Registry,
    store: Store,
    embedder: Embedder,
    sources: Sequence[Source],
    leases: Leases,
    *,
    holder: str,
    settings: Settings,
    stop: asyncio.Event | None = None,
) -> tuple[list[Synced], list[SourceBusy]]:
    """Every source in turn, each under its lease: a failed one is recorded and the next one still runs, one that
    another process is syncing is left to it (returned as busy). A stop ends the whole sync."""
    synced, busy = [], []
    for source in sources:
        try:
            held = await take_lease(leases, source, holder)
        except SourceBusy as exc:
            busy.append(exc)
            continue
        try:
            synced.append(
                await sync_source(registry, store, embedder, source, settings=settings, stop=stop, lease=held)
            )
        finally:
            await held.release()
    return synced, busy
