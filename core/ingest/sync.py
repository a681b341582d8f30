"""Syncing registered sources: each one is the incremental ingest of its target (unchanged documents cost no
embedding; with prune, documents gone from it are removed), under the KB's write lock as every ingest, and its
result is recorded in the source's history. One failing source does not stop the others."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from core.config import Settings
from core.embed import Embedder
from core.errors import IngestStopped, SwitchboardError
from core.ingest.connectors import CONNECTOR_KINDS
from core.ingest.connectors.sync import sync_connector
from core.ingest.pipeline import IngestReport, Progress, ingest
from core.ingest.registry import Registry, Source, SyncRun
from core.ingest.websync import ingest_web
from core.metrics import SYNCS
from core.store.client import Store

logger = logging.getLogger(__name__)

WEB_KINDS = ("crawl", "sitemap", "url")


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
) -> Synced:
    """Sync one source and record the run, its error included. A stop (SIGTERM) is recorded too, then raised as
    IngestStopped: the next sync repairs what it left."""
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
    *,
    settings: Settings,
    stop: asyncio.Event | None = None,
) -> list[Synced]:
    """Every source in turn: a failed one is recorded and the next one still runs. A stop ends the whole sync."""
    return [await sync_source(registry, store, embedder, s, settings=settings, stop=stop) for s in sources]
