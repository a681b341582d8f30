"""Scheduled sync against the real Weaviate and the real embedder: due-ness read from the stored history (a
restart neither resets nor repeats a schedule), leases on SQLite and on a real Redis (one holder; a dead holder's
lease taken over once it expires), two schedulers against one registry syncing each due source once, sources
added and removed while the scheduler runs, a stop at a document boundary, and the same schedule in `serve` and
in `switchboard sync --watch`."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from core.config import Settings
from core.embed import Embedder
from core.ingest.lease import RedisLeases, create_leases, lease
from core.ingest.registry import Registry, Source, SyncRun
from core.ingest.schedule import RETRY_SECONDS, SyncScheduler, is_due, next_sync
from core.ingest.sync import sync_source
from core.store.client import Store
from tests.conftest import StateBackend, web_settings
from tests.fakes.openai_server import FakeOpenAI
from tests.servers import run_server
from tests.support import REPO
from tests.support.embedders import Wrapped
from tests.support.ports import free_port_block
from tests.test_cli import one_line_error, run
from tests.test_ingest import CountingEmbedder

HOUR = 3600.0


def folder(root: Path, *names: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / f"{name}.md").write_text(f"# {name.title()}\n\nThe {name} page of {root.name}.\n")
    return root


async def seed_run(registry: Registry, source: Source, hours_ago: float, error: str | None = None) -> None:
    """A run recorded earlier (by a process since restarted)."""
    started = time.time() - hours_ago * HOUR
    await registry.record(source.id, SyncRun(started_at=started, finished_at=started + 1, documents=1, error=error))


def embedded(counting: CountingEmbedder) -> list[str]:
    """The pages' text, without the title that each chunk's embedding text starts with."""
    return sorted(text.rsplit("\n", 1)[-1] for text in counting.texts)


async def poll(check: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_due_from_the_stored_history(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "sources.sqlite3")
    add = registry.add
    never = await add(kb="docs", target=str(folder(tmp_path / "a")), sitemap=False, prune=False, every="6h")
    stale = await add(kb="docs", target=str(folder(tmp_path / "b")), sitemap=False, prune=False, every="6h")
    fresh = await add(kb="docs", target=str(folder(tmp_path / "c")), sitemap=False, prune=False, every="6h")
    manual = await add(kb="docs", target=str(folder(tmp_path / "d")), sitemap=False, prune=False, every=None)
    failed = await add(kb="docs", target=str(folder(tmp_path / "e")), sitemap=False, prune=False, every="1d")
    await seed_run(registry, stale, hours_ago=7)
    await seed_run(registry, fresh, hours_ago=1)
    await seed_run(registry, manual, hours_ago=100)
    await registry.record(failed.id, SyncRun(started_at=time.time() - 700, finished_at=time.time(), error="HTTP 503"))

    reopened = {s.id: s for s in await Registry(tmp_path / "sources.sqlite3").sources()}  # after a restart
    now = time.time()
    assert {i for i, s in reopened.items() if is_due(s, now)} == {never.id, stale.id, failed.id}
    assert next_sync(reopened[never.id]) == never.created_at  # never synced: at once
    assert next_sync(reopened[manual.id]) is None
    fresh_due = next_sync(reopened[fresh.id])
    assert fresh_due is not None and 5 * HOUR - 5 < fresh_due - now < 5 * HOUR + 5  # 6h after the last start
    # failed as a whole: retried after RETRY_SECONDS, not a day later
    assert next_sync(reopened[failed.id]) == reopened[failed.id].last.started_at + RETRY_SECONDS  # type: ignore[union-attr]


async def test_a_lease_has_one_holder_and_a_dead_holders_expires(state: StateBackend) -> None:
    leases = create_leases(state.settings, state.redis)
    assert await leases.take("sync:a", "one", 30)
    assert not await leases.take("sync:a", "two", 30)
    assert await leases.renew("sync:a", "one", 30) and not await leases.renew("sync:a", "two", 30)
    await leases.release("sync:a", "two")  # not two's to release
    assert not await leases.take("sync:a", "two", 30)
    await leases.release("sync:a", "one")
    assert await leases.take("sync:a", "two", 30)

    assert await leases.take("sync:b", "dead", 0.3)  # then never renewed: its holder died
    assert not await leases.take("sync:b", "alive", 30)
    await asyncio.sleep(0.4)
    assert await leases.take("sync:b", "alive", 30)
    assert not await leases.renew("sync:b", "dead", 30)  # a late holder cannot extend its successor's lease

    async with lease(leases, "sync:c", "worker", seconds=0.3) as held:  # renewed while the block runs
        assert held
        await asyncio.sleep(0.7)
        assert not await leases.take("sync:c", "other", 30)
        async with lease(leases, "sync:c", "other") as also:
            assert not also
    assert await leases.take("sync:c", "other", 30)  # released at the end of the block


async def test_two_schedulers_sync_each_due_source_once(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str, state: StateBackend
) -> None:
    """Two replicas (separate holders and lease clients, one registry): every due source synced exactly once."""
    registry = Registry(tmp_path / "sources.sqlite3")
    due = [
        await registry.add(kb=kb, target=str(folder(tmp_path / n, n)), sitemap=False, prune=False, every="6h")
        for n in ("never", "stale", "third")
    ]
    await seed_run(registry, due[1], hours_ago=7)
    fresh = await registry.add(
        kb=kb, target=str(folder(tmp_path / "fresh", "f")), sitemap=False, prune=False, every="6h"
    )
    await seed_run(registry, fresh, hours_ago=1)
    await registry.add(kb=kb, target=str(folder(tmp_path / "manual", "m")), sitemap=False, prune=False, every=None)
    counting = CountingEmbedder(embedder)
    replicas = [
        SyncScheduler(registry, store, counting, create_leases(state.settings, state.redis), settings=settings)
        for _ in range(2)
    ]

    synced = await asyncio.gather(*(r.run_due() for r in replicas))
    assert sorted(s.source.id for runs in synced for s in runs) == sorted(s.id for s in due)
    assert embedded(counting) == sorted(f"The {n} page of {n}." for n in ("never", "stale", "third"))
    runs = {s.target.rsplit("/", 1)[-1]: len(await registry.history(s.id)) for s in await registry.sources(kb)}
    assert runs == {"never": 1, "stale": 2, "third": 1, "fresh": 1, "manual": 0}  # the seeded runs included

    # A replica that read the registry before the other's run was recorded does not repeat it.
    assert await replicas[1].sync_if_due(due[0].id) is None
    assert await replicas[0].run_due() == [] and await replicas[1].run_due() == []


async def test_a_stale_lease_is_taken_over(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str, state: StateBackend
) -> None:
    registry = Registry(tmp_path / "sources.sqlite3")
    source = await registry.add(kb=kb, target=str(folder(tmp_path / "d", "x")), sitemap=False, prune=False, every="1h")
    leases = create_leases(state.settings, state.redis)
    assert await leases.take(f"sync:{source.id}", "pid 1 on a dead replica", 0.5)  # killed while syncing
    scheduler = SyncScheduler(registry, store, embedder, leases, settings=settings)
    assert await scheduler.run_due() == []  # its lease is still live: its work
    await asyncio.sleep(0.6)
    [synced] = await scheduler.run_due()
    assert synced.source.id == source.id and synced.run.added == 1 and synced.run.error is None


async def test_redis_down_is_logged_and_the_schedule_goes_on(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry(tmp_path / "sources.sqlite3")
    await registry.add(kb=kb, target=str(folder(tmp_path / "d", "x")), sitemap=False, prune=False, every="1h")
    closed = free_port_block()[0]  # nothing listens there: Redis is down
    down = Redis.from_url(f"redis://127.0.0.1:{closed}", socket_connect_timeout=1)
    scheduler = SyncScheduler(registry, store, embedder, RedisLeases(down), settings=settings)
    with caplog.at_level(logging.ERROR, "core.ingest.schedule"):
        async with scheduler.running(tick=0.1):
            await poll(lambda: _logged(caplog, 2))  # tick after tick, each one failing politely
    await down.aclose()
    assert "Redis failed while taking the lease" in caplog.records[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)  # an expected failure: no traceback


async def _logged(caplog: pytest.LogCaptureFixture, count: int) -> bool:
    return len([r for r in caplog.records if r.name == "core.ingest.schedule"]) >= count


@dataclass
class Gate(Wrapped):
    """Holds the first batch until released."""

    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.entered.set()
        assert self.release.wait(30), "never released"
        return self.inner.embed_documents(texts)


async def test_the_running_scheduler_follows_the_registry_and_stops_at_a_document_boundary(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str
) -> None:
    registry = Registry(tmp_path / "sources.sqlite3")
    leases = create_leases(settings.model_copy(update={"data_dir": tmp_path}), None)
    first = await registry.add(kb=kb, target=str(folder(tmp_path / "one", "a")), sitemap=False, prune=False, every="1d")
    counting = CountingEmbedder(embedder)
    scheduler = SyncScheduler(registry, store, counting, leases, settings=settings)

    async with scheduler.running(tick=0.1):
        await poll(lambda: _runs(registry, first.id, 1))  # the first tick is at start
        added = await registry.add(
            kb=kb, target=str(folder(tmp_path / "two", "b")), sitemap=False, prune=False, every="1d"
        )
        await poll(lambda: _runs(registry, added.id, 1))  # added while running (as `source add` elsewhere would)
        await asyncio.sleep(0.5)  # several ticks
    assert [len(await registry.history(s.id)) for s in (first, added)] == [1, 1]  # not repeated: every 1d
    assert embedded(counting) == ["The a page of one.", "The b page of two."]
    # Removed after a pass read the registry, before its turn: not synced.
    removed = await registry.add(
        kb=kb, target=str(folder(tmp_path / "three", "c")), sitemap=False, prune=False, every="1d"
    )
    await registry.remove(removed.id)
    assert await scheduler.sync_if_due(removed.id) is None

    # Closing while a sync runs: it stops once the document in progress is stored, and records why.
    slow = settings.model_copy(update={"embed_batch_size": 1})  # a batch of two chunks: one per document
    big = await registry.add(
        kb=kb, target=str(folder(tmp_path / "big", "p", "q", "r", "s")), sitemap=False, prune=False, every="1d"
    )
    gate = Gate(embedder)
    scheduler = SyncScheduler(registry, store, gate, leases, settings=slow)
    async with scheduler.running(tick=0.1):
        assert await asyncio.to_thread(gate.entered.wait, 60)
        asyncio.get_running_loop().call_later(0.3, gate.release.set)  # after close() asked it to stop
    [stopped] = await registry.history(big.id)
    assert stopped.error is not None and "stopped before 2 of 4 documents" in stopped.error
    stored = await store.stored_chunks(kb)
    assert len([d for d, chunks in stored.items() if any("/big/" in c.source for c in chunks.values())]) == 2
    source = await registry.get(big.id)
    assert next_sync(source) == stopped.started_at + RETRY_SECONDS  # soon, not a day later
    repaired = await sync_source(registry, store, embedder, source, settings=settings)
    assert (repaired.run.documents_unchanged, repaired.run.added) == (2, 2)


async def _runs(registry: Registry, source_id: str, count: int) -> bool:
    return len(await registry.history(source_id)) >= count


def test_serve_runs_due_syncs_and_the_admin_api_shows_them(
    settings: Settings, fake_llm: FakeOpenAI, host_site: tuple[str, Path], tmp_path: Path, kb: str
) -> None:
    """The server shares the session's data directory (its Weaviate key lives there): a KB of this test's own."""
    registry = Registry.for_settings(settings)
    docs = folder(tmp_path / "docs", "alpha", "beta")
    source = asyncio.run(registry.add(kb=kb, target=str(docs), sitemap=False, prune=False, every="6h"))
    key = "admin-key-for-tests-0123456789"
    served = web_settings(settings, fake_llm, host_site[0], tmp_path, sync_schedule=True, admin_api_key=SecretStr(key))
    auth = {"Authorization": f"Bearer {key}"}
    with run_server(served.model_copy(update={"sync_schedule": False})) as server:  # a replica kept out of it
        time.sleep(1)  # a scheduler would have started on the due source at once
        due = httpx.get(f"{server.url}/admin/kbs/{kb}/sources/{source.id}", headers=auth).json()
    assert due["history"] == [] and abs(datetime.fromisoformat(due["next_sync"]).timestamp() - source.created_at) < 1e-3
    assert asyncio.run(registry.history(source.id)) == []
    with run_server(served) as server:
        deadline = time.monotonic() + 60
        while not asyncio.run(registry.history(source.id)):
            assert time.monotonic() < deadline, "the server never synced the due source"
            time.sleep(0.2)
        got = httpx.get(f"{server.url}/admin/kbs/{kb}/sources/{source.id}", headers=auth).json()
    [run_] = got["history"]
    assert (run_["documents"], run_["added"], run_["error"]) == (2, 2, None)
    assert got["last_sync"] == run_ and got["next_sync"] is not None  # 6h after it started
    asyncio.run(registry.remove(source.id))


def test_cli_source_history_and_sync_watch(cli_env: dict[str, str], tmp_path: Path, kb: str) -> None:
    registry = Registry(Path(cli_env["SWITCHBOARD_DATA_DIR"]) / "sources.sqlite3")
    docs = folder(tmp_path / "docs", "alpha", "beta")
    added = run(cli_env, "source", "add", "--kb", kb, str(docs), "--every", "6h", cwd=tmp_path)
    source_id = added.stdout.split()[0]
    other = folder(tmp_path / "other", "x")
    manual = asyncio.run(registry.add(kb=kb, target=str(other), sitemap=False, prune=False, every=None))
    one_line_error(run(cli_env, "sync", "--watch", "--source", source_id, cwd=tmp_path), "--watch syncs every due")

    exe = str(REPO / ".venv" / "bin" / "switchboard")  # the console script `run` runs
    watching = subprocess.Popen(
        [exe, "sync", "--watch", "--kb", kb], env=cli_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not asyncio.run(registry.history(source_id)) and watching.poll() is None:
            assert time.monotonic() < deadline, "`sync --watch` never synced the due source"
            time.sleep(0.2)
        watching.send_signal(signal.SIGTERM)
        stdout, stderr = watching.communicate(timeout=60)
    finally:
        watching.kill()
    assert watching.returncode == 0, stderr.decode()
    assert "stopped" in stdout.decode() and "synced source" in stderr.decode()
    # The scheduler logs the counts as the CLI prints them (core.ingest.pipeline.count_summary).
    assert "2 documents (0 unchanged); chunks 2 added, 0 updated, 0 unchanged, 0 deleted" in stderr.decode()
    listed = json.loads(run(cli_env, "source", "history", source_id, "--json", cwd=tmp_path).stdout)
    [run_] = listed["history"]
    assert (run_["documents"], run_["added"], run_["error"]) == (2, 2, None)
    assert listed["next_sync"] == run_["started_at"] + 6 * HOUR
    never = run(cli_env, "source", "history", manual.id, cwd=tmp_path)  # no --every: not the schedule's
    assert "never synced" in never.stdout and "synced only by `switchboard sync`" in never.stdout, never.stdout

    shown = run(cli_env, "source", "history", source_id, "-n", "1", cwd=tmp_path)
    assert shown.returncode == 0 and "every 6h, next" in shown.stdout, shown.stderr
    listed_all = run(cli_env | {"COLUMNS": "300"}, "source", "list", "--kb", kb, cwd=tmp_path)  # no wrapping
    assert "6h, next" in listed_all.stdout and "2 documents" in listed_all.stdout, listed_all.stdout
    one_line_error(run(cli_env, "source", "history", "0" * 12, cwd=tmp_path), "no source '000000000000'")
