"""Which answer each final Teams message holds. Teams' own 👍/👎 arrive as an invoke naming the message
(`replyToId`), not the answer, and may reach any replica: the mapping lives where the de-duplication store
does, in SQLite under the data directory for one machine or in Redis (REDIS_URL) for every replica, and is
kept for RETENTION (feedback on an older message is logged and dropped).
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
CREATE TABLE IF NOT EXISTS answer_messages (message TEXT PRIMARY KEY, answer TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS answer_messages_by_time ON answer_messages (at);
"""

RETENTION = 30 * 24 * 3600  # seconds


class AnswerIds(Protocol):
    async def remember(self, message_id: str, answer_id: str) -> None: ...

    async def get(self, message_id: str) -> str | None: ...


class SQLiteAnswerIds:
    def __init__(self, path: Path):
        self._path = path
        init_db(path, _SCHEMA)

    def _remember(self, message_id: str, answer_id: str) -> None:
        now = time.time()
        with connect(self._path) as db:
            db.execute("DELETE FROM answer_messages WHERE at < ?", (now - RETENTION,))
            db.execute("INSERT OR REPLACE INTO answer_messages VALUES (?, ?, ?)", (message_id, answer_id, now))

    async def remember(self, message_id: str, answer_id: str) -> None:
        await asyncio.to_thread(self._remember, message_id, answer_id)

    def _get(self, message_id: str) -> str | None:
        with connect(self._path) as db:
            row = db.execute("SELECT answer FROM answer_messages WHERE message = ?", (message_id,)).fetchone()
        return str(row[0]) if row else None

    async def get(self, message_id: str) -> str | None:
        return await asyncio.to_thread(self._get, message_id)


class RedisAnswerIds:
    def __init__(self, redis: Redis):
        self._redis = redis

    async def remember(self, message_id: str, answer_id: str) -> None:
        with redis_errors("remembering which Teams message holds an answer"):
            await self._redis.set(redis_key("teams-answer", message_id), answer_id, ex=RETENTION)

    async def get(self, message_id: str) -> str | None:
        with redis_errors("looking up the answer a Teams message holds"):
            value = await self._redis.get(redis_key("teams-answer", message_id))
        return value.decode() if isinstance(value, bytes) else value


def create_answer_ids(state: SharedState) -> AnswerIds:
    return SQLiteAnswerIds(state.data_dir / "teams.sqlite3") if state.redis is None else RedisAnswerIds(state.redis)
