"""Scheduled sync: a source registered with `every` is synced again once its last run started that long ago (or
at once if it never ran). The schedule is read from the registry's history, not kept in memory, so a restart
neither resets it ("every 6h" does not mean "6 h after the process started") nor repeats a run. A run that failed
as a whole (an unreachable source, a SIGTERM half-way) is tried again after RETRY_SECONDS at the latest.

An APScheduler interval job ticks every TICK_SECONDS; each tick, if no sync is running in this process, starts one
pass over the registry as it is now (sources added or removed by any process meanwhile count) that syncs the
due sources one after another. With several replicas, a lease per source (core.ingest.lease) lets exactly one
run each due sync: the taker reads the source again under its lease, so a run that another replica has just
recorded is not repeated. Closing stops a sync in progress at a document boundary, as SIGTERM stops an ingest;
the next run repairs the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.config import Settings
from core.embed import Embedder
from core.errors import IngestStopped, SwitchboardError
from core.ingest.lease import Leases, lease, new_holder
from core.ingest.pipeline import count_summary
from core.ingest.registry import Registry, Source, SourceNotFound, every_seconds
from core.ingest.sync import Synced, sync_source
from core.store.client import Store

logger = logging.getLogger(__name__)

TICK_SECONDS = 30.0  # how late a due sync may start, and how often the registry is read
# A run that failed as a whole (the source unreachable, Weaviate down, stopped by SIGTERM half-way) is tried again
# this soon, or after `every` if that is shorter: a restart must not leave a half-synced source for a day.
RETRY_SECONDS = 600.0


def next_sync(source: Source) -> float | None:
    """When the source is due (epoch seconds; in the past: now), from its last run; None: not scheduled."""
    if source.every is None:
        return None
    last = source.last
    if last is None:
        return source.created_at
    interval = float(every_seconds(source.every))
    if last.error is not None and last.documents == 0:  # nothing was synced (sync.SyncRun.of without a report)
        interval = min(interval, RETRY_SECONDS)
    return last.started_at + interval


def is_due(source: Source, now: float) -> bool:
    due = next_sync(source)
    return due is not None and due <= now


class SyncScheduler:
    """Runs the due syncs of every KB's sources, or of one KB's (`kb`)."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        embedder: Embedder,
        leases: Leases,
        *,
        settings: Settings,
        kb: str | None = None,
        holder: str | None = None,
    ):
        self._registry = registry
        self._store = store
        self._embedder = embedder
        self._leases = leases
        self._settings = settings
        self._kb = kb
        self.holder = holder or new_holder()
        self._stop = asyncio.Event()  # set by close(): the sync in progress stops at a document boundary
        self._pass: asyncio.Task[list[Synced]] | None = None

    async def run_due(self) -> list[Synced]:
        """One pass: sync each source due now that no other replica is syncing. Raises IngestStopped if closed
        meanwhile."""
        synced = []
        for source in await self._registry.sources(self._kb):
            if self._stop.is_set():
                break
            if is_due(source, time.time()):
                done = await self.sync_if_due(source.id)
                if done is not None:
                    synced.append(done)
        return synced

    async def sync_if_due(self, source_id: str) -> Synced | None:
        """Sync the source if it is still due once its lease is ours; None: another replica has it, it was
        removed, or it is no longer due (another replica's run was recorded since it was read)."""
        async with lease(self._leases, f"sync:{source_id}", self.holder) as held:
            if not held:
                logger.debug("source %s is being synced by another replica", source_id)
                return None
            try:
                source = await self._registry.get(source_id)
            except SourceNotFound:
                return None
            if not is_due(source, time.time()):
                return None
            synced = await sync_source(
                self._registry, self._store, self._embedder, source, settings=self._settings, stop=self._stop
            )
        run = synced.run
        logger.log(
            logging.WARNING if run.error else logging.INFO,
            "synced source %s (%s → %s) in %.1f s: %s%s",
            source.id,
            source.target,
            source.kb,
            run.finished_at - run.started_at,
            count_summary(run),
            f"; {run.error}" if run.error else "",
        )
        return synced

    async def _tick(self) -> None:
        # Returns at once: a pass may outlast many ticks, and APScheduler would warn about each one it skips.
        if self._pass is None or self._pass.done():
            self._pass = asyncio.create_task(self._logged_pass())

    async def _logged_pass(self) -> list[Synced]:
        try:
            return await self.run_due()
        except IngestStopped:
            return []
        except SwitchboardError as exc:  # the registry or Redis failed: the next tick tries again
            logger.error("scheduled sync: %s", exc)
        except Exception:  # a bug must not end the schedule (nor surface only when the server stops)
            logger.exception("scheduled sync failed")
        return []

    @asynccontextmanager
    async def running(self, tick: float = TICK_SECONDS) -> AsyncIterator[None]:
        """Tick (the first at once) until the block ends; then stop the sync in progress at a document boundary
        and wait for it."""
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=UTC)
        scheduler.add_job(
            self._tick,
            "interval",
            seconds=tick,
            next_run_time=datetime.now(UTC),
            coalesce=True,
            misfire_grace_time=None,  # a tick delayed by a busy event loop still runs (late, once), unwarned
        )
        scheduler.start()
        try:
            yield
        finally:
            scheduler.shutdown(wait=False)
            self._stop.set()
            if self._pass is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._pass
