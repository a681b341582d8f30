"""Leases: one holder at a time for a named piece of work shared by several processes or replicas (a scheduled
sync of one source), with an expiry that the holder renews while it works, so that a holder that died (killed,
its machine gone) stops blocking the work once its lease runs out.

Kept where the deployment keeps its shared state: in Redis with REDIS_URL (SET NX PX, renewed and released only
by the holder, compared in a script), otherwise in SQLite under the data directory (leases.sqlite3), which every
process sharing that directory sees. Unlike the KB write lock (core.ingest.lock) nobody waits for a lease: work
whose lease is taken is simply someone else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

from redis.asyncio import Redis

from core.config import Settings
from core.errors import StateError
from core.shared_state import redis_errors, redis_key
from core.sqlite import connect, init_db

logger = logging.getLogger(__name__)

LEASE_SECONDS = 60.0  # a dead holder's lease is free after this; a live one renews it every third of it


class Leases(Protocol):
    async def take(self, name: str, holder: str, seconds: float) -> bool:
        """True if `name` was free (or its lease had expired) and is now `holder`'s for `seconds`."""
        ...

    async def renew(self, name: str, holder: str, seconds: float) -> bool:
        """False if the lease is no longer `holder`'s (it expired and another took it)."""
        ...

    async def release(self, name: str, holder: str) -> None: ...


def new_holder() -> str:
    """Unique per scheduler, and says who holds a lease."""
    return f"pid {os.getpid()} on {socket.gethostname()} [{uuid.uuid4().hex[:8]}]"


_SCHEMA = "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL);"


class SqliteLeases:
    """Expiry in wall-clock seconds: the processes sharing a data directory share a clock."""

    def __init__(self, path: Path):
        self._path = path
        init_db(path, _SCHEMA)

    async def take(self, name: str, holder: str, seconds: float) -> bool:
        return await asyncio.to_thread(self._take, name, holder, seconds)

    def _take(self, name: str, holder: str, seconds: float) -> bool:
        now = time.time()
        with connect(self._path) as db:  # one statement: atomic, whoever else tries at the same moment
            taken = db.execute(
                "INSERT INTO leases VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET holder = excluded.holder, expires = excluded.expires WHERE leases.expires <= ?",
                (name, holder, now + seconds, now),
            )
            return taken.rowcount == 1

    async def renew(self, name: str, holder: str, seconds: float) -> bool:
        return await asyncio.to_thread(self._renew, name, holder, seconds)

    def _renew(self, name: str, holder: str, seconds: float) -> bool:
        with connect(self._path) as db:
            renewed = db.execute(
                "UPDATE leases SET expires = ? WHERE name = ? AND holder = ?", (time.time() + seconds, name, holder)
            )
            return renewed.rowcount == 1

    async def release(self, name: str, holder: str) -> None:
        await asyncio.to_thread(self._release, name, holder)

    def _release(self, name: str, holder: str) -> None:
        with connect(self._path) as db:
            db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))


# Compare-and-act, so that a holder whose lease expired never extends or deletes its successor's.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class RedisLeases:
    def __init__(self, redis: Redis):
        self._redis = redis

    async def take(self, name: str, holder: str, seconds: float) -> bool:
        with redis_errors(f"taking the lease {name!r}"):
            return bool(await self._redis.set(redis_key("lease", name), holder, nx=True, px=int(seconds * 1000)))

    async def renew(self, name: str, holder: str, seconds: float) -> bool:
        with redis_errors(f"renewing the lease {name!r}"):
            return bool(await self._redis.eval(_RENEW, 1, redis_key("lease", name), holder, int(seconds * 1000)))

    async def release(self, name: str, holder: str) -> None:
        with redis_errors(f"releasing the lease {name!r}"):
            await self._redis.eval(_RELEASE, 1, redis_key("lease", name), holder)


def create_leases(settings: Settings, redis: Redis | None) -> Leases:
    """`redis`: the process's client (core.shared_state.open_redis), None without REDIS_URL."""
    return SqliteLeases(settings.data_dir / "leases.sqlite3") if redis is None else RedisLeases(redis)


class Lease:
    """A lease that is ours: renewed every third of its time from the moment it is taken until `release()`. If it
    is lost meanwhile (another holder has it: we renewed too late, or renewals kept failing until it expired),
    `lost` is set, so the work it guards can stop before writing more (another may be doing the same work)."""

    def __init__(self, leases: Leases, name: str, holder: str, seconds: float):
        self.name = name
        self.holder = holder
        self.lost = asyncio.Event()
        self._leases = leases
        self._seconds = seconds
        self._renewer = asyncio.create_task(self._renew())

    @classmethod
    async def take(cls, leases: Leases, name: str, holder: str, seconds: float = LEASE_SECONDS) -> Lease | None:
        """The lease, or None: another holder has it."""
        if not await leases.take(name, holder, seconds):
            return None
        return cls(leases, name, holder, seconds)

    async def release(self) -> None:
        self._renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewer
        await self._leases.release(self.name, self.holder)

    async def _renew(self) -> None:
        renewed_at = time.monotonic()
        while True:
            await asyncio.sleep(self._seconds / 3)
            try:
                renewed = await self._leases.renew(self.name, self.holder, self._seconds)
            except (StateError, sqlite3.Error):  # Redis down or SQLite busy for a moment: the next may be in time
                logger.exception("could not renew the lease %r", self.name)
                if time.monotonic() - renewed_at < self._seconds:
                    continue
                renewed = False  # expired by now: another may have taken it, so it is not ours to work under
            if not renewed:
                logger.error("lost the lease %r (renewed too late?); stopping the work it guards", self.name)
                self.lost.set()
                return
            renewed_at = time.monotonic()


@asynccontextmanager
async def lease(leases: Leases, name: str, holder: str, seconds: float = LEASE_SECONDS) -> AsyncIterator[Lease | None]:
    """The lease (see Lease) until the block ends, then released; None: another holder has it, and the block
    should leave the work alone."""
    held = await Lease.take(leases, name, holder, seconds)
    if held is None:
        yield None
        return
    try:
        yield held
    finally:
        await held.release()
