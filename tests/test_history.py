"""Conversation history on both backends (SQLite, Redis): concurrent writers in several processes, persistence,
bounds, reset; and Redis's expiry of idle conversations."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

from core.answer.history import RedisHistory, create_history
from core.config import Settings
from core.shared_state import open_redis, redis_key
from core.types import Turn
from tests.conftest import StateBackend


def pair(question: str, answer: str) -> list[Turn]:
    return [Turn(role="user", content=question), Turn(role="assistant", content=answer)]


def _writer(settings: Settings, worker: int, rounds: int) -> None:
    """One process (a replica) appending to a shared, an own and a bounded conversation."""

    async def go() -> None:
        async with open_redis(settings) as redis:
            history = create_history(settings.model_copy(update={"history_max_turns": 1000}), redis)
            bounded = create_history(settings.model_copy(update={"history_max_turns": 3}), redis)
            for i in range(rounds):
                turns = pair(f"q{worker}.{i}", f"a{worker}.{i}")
                await history.append("web", "shared", turns)
                await history.append("web", f"own-{worker}", turns)
                await bounded.append("web", "bounded", turns)

    asyncio.run(go())


async def test_concurrent_writers_in_several_processes(state: StateBackend) -> None:
    create_history(state.settings, state.redis)  # SQLite: the schema exists before the writers race
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(state.settings, w, 40)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
        assert p.exitcode == 0
    history = create_history(state.settings.model_copy(update={"history_max_turns": 1000}), state.redis)
    shared = await history.load("web", "shared")
    assert len(shared) == 4 * 40 * 2
    for w in range(4):  # each writer's pairs stay adjacent and in order
        own = await history.load("web", f"own-{w}")
        assert [t.content for t in own] == [x for i in range(40) for x in (f"q{w}.{i}", f"a{w}.{i}")]
    # Appending and trimming are one step: the bounded conversation is always whole question/answer pairs.
    bounded = await history.load("web", "bounded")
    assert len(bounded) == 6 and [t.role for t in bounded] == ["user", "assistant"] * 3
    assert all(q.content[1:] == a.content[1:] for q, a in zip(bounded[::2], bounded[1::2], strict=True))


async def test_persists_across_restarts_and_is_bounded(state: StateBackend) -> None:
    settings = state.settings.model_copy(update={"history_max_turns": 3})
    first = create_history(settings, state.redis)
    for i in range(5):
        await first.append("slack", "T1:C1:1.0", pair(f"q{i}", f"a{i}"))
    await first.append("telegram", "T1:C1:1.0", [Turn(role="user", content="other channel")])
    async with open_redis(settings) as redis:  # another process (or replica) opening the same store
        reopened = create_history(settings, redis)
        assert [t.content for t in await reopened.load("slack", "T1:C1:1.0")] == ["q2", "a2", "q3", "a3", "q4", "a4"]
        await reopened.reset("slack", "T1:C1:1.0")
        assert await reopened.load("slack", "T1:C1:1.0") == []
        assert [t.content for t in await reopened.load("telegram", "T1:C1:1.0")] == ["other channel"]
    assert await first.load("slack", "T1:C1:1.0") == []


async def test_keeps_nothing_when_max_turns_is_zero(state: StateBackend) -> None:
    history = create_history(state.settings.model_copy(update={"history_max_turns": 0}), state.redis)
    await history.append("web", "c1", pair("q", "a"))
    assert await history.load("web", "c1") == []


async def test_redis_conversations_expire_when_idle(redis_url: str, tmp_path: Path) -> None:
    async with open_redis(Settings(data_dir=tmp_path, redis_url=redis_url, _env_file=None)) as redis:
        assert redis is not None
        history = RedisHistory(redis, max_turns=3, ttl_seconds=1)
        await history.append("web", "idle", pair("q0", "a0"))
        await asyncio.sleep(0.6)
        await history.append("web", "idle", pair("q1", "a1"))  # each append restarts the clock
        await asyncio.sleep(0.6)
        assert [t.content for t in await history.load("web", "idle")] == ["q0", "a0", "q1", "a1"]
        await asyncio.sleep(1.0)
        assert await history.load("web", "idle") == []
        assert not await redis.exists(redis_key("history", "web", "idle")), "nothing left behind"
