"""Every sync of a source holds its lease: `switchboard sync` (a second process) and the admin API's sync refuse a
source another process is syncing (one-line error and exit 1, HTTP 409), and a sync whose lease is lost meanwhile
(another holder took it, or renewals kept failing until it expired) stops at the next batch boundary without
writing further, recorded as a failed run saying why. Real Weaviate, the real embedder, leases on SQLite and on
a real Redis."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path

from core.config import Settings
from core.embed import Embedder
from core.errors import StateError
from core.ingest.lease import Lease, SqliteLeases, create_leases
from core.ingest.registry import Registry, Source
from core.ingest.sync import lease_name, sync_source
from core.store.client import Store
from tests.conftest import StateBackend
from tests.servers import RunningServer
from tests.support.embedders import Wrapped
from tests.test_admin_api import admin, call, finished  # noqa: F401 - `admin` is a fixture
from tests.test_cli import one_line_error, run


def folder(root: Path, count: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / f"page{i:02}.md").write_text(f"# Page {i}\n\nPage {i} says the kestrel number is {i * 7}.\n")
    return root


async def add(registry: Registry, kb: str, root: Path) -> Source:
    return await registry.add(kb=kb, target=str(root), sitemap=False, prune=False, every=None)


def leases_of(settings: Settings) -> SqliteLeases:
    """The leases every process on this data directory shares (no REDIS_URL in these settings)."""
    return SqliteLeases(settings.data_dir / "leases.sqlite3")


async def test_cli_sync_refuses_a_source_another_process_is_syncing(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path, kb: str
) -> None:
    registry = Registry.for_settings(settings)
    busy = await add(registry, kb, folder(tmp_path / "busy", 2))
    free = await add(registry, kb, folder(tmp_path / "free", 2))
    held = await Lease.take(leases_of(settings), lease_name(busy.id), "pid 1 on another replica")
    assert held is not None  # this test process is the other process; the CLI below is a second one
    try:
        alone = await asyncio.to_thread(run, cli_env, "sync", "--source", busy.id, cwd=tmp_path)
        one_line_error(alone, f"source {busy.id} is being synced by another process")
        both = await asyncio.to_thread(run, cli_env, "sync", "--kb", kb, cwd=tmp_path)
        one_line_error(both, f"source {busy.id} is being synced by another process")
        assert free.id in both.stdout and busy.id not in both.stdout  # the free one was synced all the same
        assert await registry.history(busy.id) == [] and len(await registry.history(free.id)) == 1
    finally:
        await held.release()
    after = await asyncio.to_thread(run, cli_env, "sync", "--source", busy.id, cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert len(await registry.history(busy.id)) == 1
    # and the CLI released its lease: another holder can take it now
    assert await leases_of(settings).take(lease_name(busy.id), "next", 30)
    await registry.remove(busy.id)
    await registry.remove(free.id)


async def test_admin_sync_of_a_source_being_synced_is_409(
    admin: RunningServer,  # noqa: F811
    settings: Settings,
    tmp_path: Path,
    kb: str,
) -> None:
    registry = Registry.for_settings(settings)  # the server's: it shares the session's data directory
    source = await add(registry, kb, folder(tmp_path / "docs", 2))
    path = f"/admin/kbs/{kb}/sources/{source.id}/sync"
    held = await Lease.take(leases_of(settings), lease_name(source.id), "pid 1 running switchboard sync")
    assert held is not None
    try:
        refused = await asyncio.to_thread(call, admin, "POST", path)
        assert refused.status_code == 409, refused.text
        assert f"source {source.id} is being synced by another process" in refused.json()["detail"]
    finally:
        await held.release()
    accepted = await asyncio.to_thread(call, admin, "POST", path)
    assert accepted.status_code == 202, accepted.text
    job = await asyncio.to_thread(finished, admin, accepted.json()["id"])
    assert job["state"] == "done" and job["summary"]["added"] == 2, job
    assert await leases_of(settings).take(lease_name(source.id), "next", 30)  # released when the job ended
    await registry.remove(source.id)


@dataclass
class Gated(Wrapped):
    """Holds the first embedding batch until the test lets it go: the sync is mid-way, with nothing written."""

    started: threading.Event = field(default_factory=threading.Event)
    proceed: threading.Event = field(default_factory=threading.Event)
    calls: int = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        self.started.set()
        assert self.proceed.wait(30)
        return self.inner.embed_documents(texts)


async def test_a_sync_that_loses_its_lease_stops_at_the_next_batch_and_says_why(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str, state: StateBackend
) -> None:
    registry = Registry(tmp_path / "sources.sqlite3")
    source = await add(registry, kb, folder(tmp_path / "docs", 20))
    leases = create_leases(state.settings, state.redis)
    name = lease_name(source.id)
    # Renewed every second: often enough to see the takeover below within the wait, and long enough that a loaded
    # machine's stalled event loop cannot let it expire on its own first (0.6 s once did, so nothing was written).
    held = await Lease.take(leases, name, "slow replica", seconds=3)
    assert held is not None
    gated = Gated(embedder)
    small = settings.model_copy(update={"embed_batch_size": 4})  # stored 8 chunks (8 one-chunk pages) at a time
    syncing = asyncio.create_task(sync_source(registry, store, gated, source, settings=small, lease=held))
    await asyncio.to_thread(gated.started.wait, 30)
    assert not held.lost.is_set()  # lost below by the takeover, not before
    # Another replica takes the lease over (as if this one had stalled past its expiry).
    await leases.release(name, "slow replica")
    assert await leases.take(name, "other replica", 60)
    await asyncio.wait_for(held.lost.wait(), 5)
    gated.proceed.set()
    synced = await syncing
    await held.release()

    assert synced.report is None and synced.run.error is not None
    assert "lease was lost to another process" in synced.run.error, synced.run.error
    [recorded] = await registry.history(source.id)
    assert recorded.error == synced.run.error
    documents, _ = await store.counts(kb)
    assert documents == 8  # the batch in flight completed; nothing written after it
    assert not await leases.take(name, "third", 60)  # the other replica's lease was left alone


class Failing(SqliteLeases):
    """Renewal cannot reach the lease store (Redis down)."""

    async def renew(self, name: str, holder: str, seconds: float) -> bool:
        raise StateError("Redis is unreachable")


async def test_renewals_failing_past_the_expiry_lose_the_lease(tmp_path: Path) -> None:
    leases = Failing(tmp_path / "leases.sqlite3")
    held = await Lease.take(leases, "sync:x", "me", seconds=0.3)
    assert held is not None and not held.lost.is_set()
    await asyncio.sleep(0.15)
    assert not held.lost.is_set()  # one failed renewal: the next may be in time
    await asyncio.wait_for(held.lost.wait(), 2)
    await held.release()
