"""Conversation memory keyed by (channel, conversation id).

SQLite under the data directory is the single-machine default (several processes can write it at once: see
core.sqlite); with REDIS_URL, a Redis list per conversation is shared by every replica. Both keep the last
HISTORY_MAX_TURNS question/answer pairs, appending and trimming in one transaction, and forget a conversation
nobody continued for HISTORY_TTL_DAYS (Redis expires the key; SQLite stops loading it and purges it at startup,
then at most hourly as turns are written). A reset erases the text on disk too (core.sqlite: secure_delete, WAL
emptied).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, cast

from redis.asyncio import Redis

from core.config import Settings
from core.shared_state import redis_errors, redis_key
from core.sqlite import Periodic, connect, init_db, scrub
from core.types import Turn

Role = Literal["user", "assistant"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    conversation TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns (channel, conversation, id);
"""
_PURGE_EVERY = 3600.0  # seconds between purges of idle conversations (checked on writes)


class HistoryStore(Protocol):
    async def load(self, channel: str, conversation: str) -> list[Turn]: ...

    async def append(self, channel: str, conversation: str, turns: Sequence[Turn]) -> None: ...

    async def reset(self, channel: str, conversation: str) -> None: ...

    async def purge_expired(self) -> int: ...


class SQLiteHistory:
    """Keeps the last `max_turns` question/answer pairs of each conversation, for `ttl_seconds` after its last."""

    def __init__(self, path: Path, max_turns: int, ttl_seconds: float = 30 * 86400):
        self._path = path
        self._max_rows = max_turns * 2
        self._ttl = ttl_seconds
        self._purge = Periodic(_PURGE_EVERY)
        init_db(path, _SCHEMA)

    def _load(self, channel: str, conversation: str) -> list[Turn]:
        with connect(self._path) as db:
            rows = db.execute(
                "SELECT role, content, created_at FROM turns WHERE channel = ? AND conversation = ? "
                "ORDER BY id DESC LIMIT ?",
                (channel, conversation, self._max_rows),
            ).fetchall()
        if rows and rows[0][2] < time.time() - self._ttl:  # idle too long: forgotten, as Redis expires it
            return []
        return [Turn(role=cast(Role, role), content=content) for role, content, _ in rows[::-1]]

    def _append(self, channel: str, conversation: str, turns: Sequence[Turn]) -> None:
        now = time.time()
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO turns (channel, conversation, role, content, created_at) VALUES (?, ?, ?, ?, ?)",
                [(channel, conversation, t.role, t.content, now) for t in turns],
            )
            db.execute(
                "DELETE FROM turns WHERE channel = ? AND conversation = ? AND id NOT IN ("
                " SELECT id FROM turns WHERE channel = ? AND conversation = ? ORDER BY id DESC LIMIT ?)",
                (channel, conversation, channel, conversation, self._max_rows),
            )
            db.execute("COMMIT")
        if self._purge.due():
            self._purge_expired()

    def _reset(self, channel: str, conversation: str) -> None:
        with connect(self._path) as db:
            db.execute("DELETE FROM turns WHERE channel = ? AND conversation = ?", (channel, conversation))
            scrub(db)

    def _purge_expired(self) -> int:
        with connect(self._path) as db:
            purged = db.execute(
                "DELETE FROM turns WHERE (channel, conversation) IN (SELECT channel, conversation FROM turns "
                "GROUP BY channel, conversation HAVING max(created_at) < ?)",
                (time.time() - self._ttl,),
            ).rowcount
            if purged:
                scrub(db)
        return purged

    async def load(self, channel: str, conversation: str) -> list[Turn]:
        return await asyncio.to_thread(self._load, channel, conversation)

    async def append(self, channel: str, conversation: str, turns: Sequence[Turn]) -> None:
        await asyncio.to_thread(self._append, channel, conversation, turns)

    async def reset(self, channel: str, conversation: str) -> None:
        await asyncio.to_thread(self._reset, channel, conversation)

    async def purge_expired(self) -> int:
        """Erase conversations idle for longer than the TTL; how many turns went."""
        return await asyncio.to_thread(self._purge_expired)


class RedisHistory:
    """The same in Redis: a list of JSON turns per conversation, expiring `ttl_seconds` after its last append."""

    def __init__(self, redis: Redis, max_turns: int, ttl_seconds: int):
        self._redis = redis
        self._max_rows = max_turns * 2
        self._ttl = ttl_seconds

    async def load(self, channel: str, conversation: str) -> list[Turn]:
        if not self._max_rows:
            return []
        with redis_errors("loading a conversation"):
            rows = await self._redis.lrange(redis_key("history", channel, conversation), -self._max_rows, -1)
        return [Turn(role=cast(Role, t["role"]), content=t["content"]) for t in map(json.loads, rows)]

    async def append(self, channel: str, conversation: str, turns: Sequence[Turn]) -> None:
        if not self._max_rows or not turns:
            return
        name = redis_key("history", channel, conversation)
        rows = [json.dumps({"role": t.role, "content": t.content}) for t in turns]
        with redis_errors("saving a conversation"):
            async with self._redis.pipeline(transaction=True) as tx:  # MULTI/EXEC: no reader sees it half-trimmed
                tx.rpush(name, *rows)
                tx.ltrim(name, -self._max_rows, -1)
                tx.expire(name, self._ttl)
                await tx.execute()

    async def reset(self, channel: str, conversation: str) -> None:
        with redis_errors("forgetting a conversation"):
            await self._redis.delete(redis_key("history", channel, conversation))

    async def purge_expired(self) -> int:
        return 0  # Redis expires idle conversations itself


def create_history(settings: Settings, redis: Redis | None) -> HistoryStore:
    if redis is None:
        return SQLiteHistory(
            settings.data_dir / "history.sqlite3", settings.history_max_turns, settings.history_ttl_days * 86400
        )
    return RedisHistory(redis, settings.history_max_turns, settings.history_ttl_days * 86400)


def fit_history(turns: Sequence[Turn], max_tokens: int) -> list[Turn]:
    """The most recent turns within a token budget (about four characters a token)."""
    kept: list[Turn] = []
    budget = max_tokens * 4
    for turn in reversed(turns):
        budget -= len(turn.content)
        if budget < 0:
            break
        kept.append(turn)
    return kept[::-1]
