"""The SQLite history store: concurrent writers from several processes, persistence, bounds, reset."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

from core.history import SQLiteHistory
from core.types import Turn


def _writer(path: str, worker: int, rounds: int) -> None:
    history = SQLiteHistory(Path(path), max_turns=1000)

    async def go() -> None:
        for i in range(rounds):
            turns = [Turn(role="user", content=f"q{worker}.{i}"), Turn(role="assistant", content=f"a{worker}.{i}")]
            await history.append("web", "shared", turns)
            await history.append("web", f"own-{worker}", turns)

    asyncio.run(go())


async def test_concurrent_writers_in_several_processes(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    SQLiteHistory(path, max_turns=1000)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(path), w, 40)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
        assert p.exitcode == 0
    history = SQLiteHistory(path, max_turns=1000)
    shared = await history.load("web", "shared")
    assert len(shared) == 4 * 40 * 2
    for w in range(4):  # each writer's pairs stay adjacent and in order
        own = await history.load("web", f"own-{w}")
        assert [t.content for t in own] == [x for i in range(40) for x in (f"q{w}.{i}", f"a{w}.{i}")]


async def test_persists_across_restarts_and_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    first = SQLiteHistory(path, max_turns=3)
    for i in range(5):
        await first.append(
            "slack", "T1:C1:1.0", [Turn(role="user", content=f"q{i}"), Turn(role="assistant", content=f"a{i}")]
        )
    await first.append("telegram", "T1:C1:1.0", [Turn(role="user", content="other channel")])
    reopened = SQLiteHistory(path, max_turns=3)
    assert [t.content for t in await reopened.load("slack", "T1:C1:1.0")] == ["q2", "a2", "q3", "a3", "q4", "a4"]
    await reopened.reset("slack", "T1:C1:1.0")
    assert await reopened.load("slack", "T1:C1:1.0") == []
    assert [t.content for t in await reopened.load("telegram", "T1:C1:1.0")] == ["other channel"]
