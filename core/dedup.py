"""At-most-once handling of redelivered events (Slack retries, Telegram updates, Discord replays).

`first(key)` is true exactly once per key within the retention window, across every process sharing the
store: SQLite under the data directory for one machine; the Deduplicator protocol is what a shared backend
(Redis, for several replicas) implements.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Protocol

from core.config import Settings
from core.sqlite import connect, init_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS seen_by_time ON seen (at);
"""


class Deduplicator(Protocol):
    async def first(self, key: str) -> bool: ...


class SQLiteDeduplicator:
    def __init__(self, path: Path, retention_seconds: float = 24 * 3600):
        self._path = path
        self._retention = retention_seconds
        init_db(path, _SCHEMA)

    def _first(self, key: str) -> bool:
        now = time.time()
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM seen WHERE at < ?", (now - self._retention,))
            try:
                db.execute("INSERT INTO seen (key, at) VALUES (?, ?)", (key, now))
            except sqlite3.IntegrityError:
                db.execute("COMMIT")
                return False
            db.execute("COMMIT")
        return True

    async def first(self, key: str) -> bool:
        return await asyncio.to_thread(self._first, key)


def create_deduplicator(settings: Settings) -> Deduplicator:
    return SQLiteDeduplicator(settings.data_dir / "events.sqlite3")
