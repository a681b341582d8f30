"""At-most-once handling of redelivered events (Slack retries, Telegram updates, Discord replays).

`first(key)` is true exactly once per key within the retention window, across every process sharing the
store: SQLite under the data directory for one machine, or Redis (REDIS_URL) for every replica.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Protocol

from redis.asyncio import Redis

from core.shared_state import SharedState, redis_errors, redis_key
from core.sqlite import connect, init_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS seen_by_time ON seen (at);
"""

RETENTION = 24 * 3600  # seconds: longer than any platform keeps redelivering


class Deduplicator(Protocol):
    async def first(self, key: str) -> bool: ...


class SQLiteDeduplicator:
    def __init__(self, path: Path, retention_seconds: float = RETENTION):
        self._path = path
        self._retention = retention_seconds
        init_db(path, _SCHEMA)

    def _first(self, key: str) -> bool:
        now = time.time()
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM seen WHERE at < ?", (now - self._retention,))
            new = db.execute("INSERT OR IGNORE INTO seen (key, at) VALUES (?, ?)", (key, now)).rowcount == 1
            db.execute("COMMIT")
        return new

    async def first(self, key: str) -> bool:
        return await asyncio.to_thread(self._first, key)


class RedisDeduplicator:
    """SET NX with an expiry: the one caller that creates the key handles the event."""

    def __init__(self, redis: Redis, retention_seconds: float = RETENTION):
        self._redis = redis
        self._retention_ms = max(1, int(retention_seconds * 1000))

    async def first(self, key: str) -> bool:
        with redis_errors("checking for a redelivered event"):
            return bool(await self._redis.set(redis_key("seen", key), 1, nx=True, px=self._retention_ms))


def create_deduplicator(state: SharedState) -> Deduplicator:
    if state.redis is None:
        return SQLiteDeduplicator(state.data_dir / "events.sqlite3")
    return RedisDeduplicator(state.redis)
