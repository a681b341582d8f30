"""Conversation memory keyed by (channel, conversation id).

SQLite under the data directory is the single-machine default (several processes can write it at once: see
core.sqlite); the HistoryStore protocol is what a shared backend (Redis, for several replicas) implements.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, cast

from core.sqlite import connect, init_db
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


class HistoryStore(Protocol):
    async def load(self, channel: str, conversation: str) -> list[Turn]: ...

    async def append(self, channel: str, conversation: str, turns: Sequence[Turn]) -> None: ...

    async def reset(self, channel: str, conversation: str) -> None: ...


class SQLiteHistory:
    """Keeps the last `max_turns` question/answer pairs of each conversation."""

    def __init__(self, path: Path, max_turns: int):
        self._path = path
        self._max_rows = max_turns * 2
        init_db(path, _SCHEMA)

    def _load(self, channel: str, conversation: str) -> list[Turn]:
        with connect(self._path) as db:
            rows = db.execute(
                "SELECT role, content FROM turns WHERE channel = ? AND conversation = ? ORDER BY id DESC LIMIT ?",
                (channel, conversation, self._max_rows),
            ).fetchall()
        return [Turn(role=cast(Role, role), content=content) for role, content in rows[::-1]]

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

    def _reset(self, channel: str, conversation: str) -> None:
        with connect(self._path) as db:
            db.execute("DELETE FROM turns WHERE channel = ? AND conversation = ?", (channel, conversation))

    async def load(self, channel: str, conversation: str) -> list[Turn]:
        return await asyncio.to_thread(self._load, channel, conversation)

    async def append(self, channel: str, conversation: str, turns: Sequence[Turn]) -> None:
        await asyncio.to_thread(self._append, channel, conversation, turns)

    async def reset(self, channel: str, conversation: str) -> None:
        await asyncio.to_thread(self._reset, channel, conversation)


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
