"""The Redis client behind REDIS_URL: the state several replicas share (conversation history, rate limits, the
session-signing secret, chat-event de-duplication).

One client per process, opened and closed with the assistant (core.answer.assistant.open_assistant); each
concern's module picks its Redis or single-machine backend from it. Every key lives under `switchboard:`, and
Redis failures become StateError with a message that says where Redis was expected.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.config import Settings
from core.errors import ConfigError, StateError

NAMESPACE = "switchboard"
_TIMEOUT = 5.0  # seconds for a connection or a reply: a stalled Redis must not hang answers


@dataclass(frozen=True)
class SharedState:
    """Where this process keeps what its deployment shares: Redis with REDIS_URL, else SQLite files in the data
    directory (one machine). The composition root opens it and hands it to the surfaces that keep such state
    (chat-event de-duplication, Teams' message → answer map), next to the assistant rather than inside it."""

    data_dir: Path
    redis: Redis | None


def redis_key(*parts: str) -> str:
    return ":".join((NAMESPACE, *parts))


def state_backend(settings: Settings) -> str:
    """Where shared state lives, for people: the Redis URL without its password, or the data directory."""
    if settings.redis_url is None:
        return f"SQLite and memory under {settings.data_dir} (one machine)"
    url = urlsplit(settings.redis_url.get_secret_value())
    return f"Redis at {url._replace(netloc=url.netloc.rpartition('@')[2]).geturl()}"


@contextmanager
def redis_errors(doing: str) -> Iterator[None]:
    try:
        yield
    except RedisError as exc:
        raise StateError(f"Redis failed while {doing}: {exc} (is Redis up? see REDIS_URL)") from exc


@asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[Redis | None]:
    """The process's Redis client, checked with a PING; None without REDIS_URL."""
    if settings.redis_url is None:
        yield None
        return
    try:
        client = Redis.from_url(
            settings.redis_url.get_secret_value(),
            decode_responses=True,
            socket_connect_timeout=_TIMEOUT,
            socket_timeout=_TIMEOUT,
        )
    except ValueError as exc:  # not a redis://, rediss:// or unix:// URL
        raise ConfigError(f"REDIS_URL: {exc}") from exc
    try:
        try:
            await client.ping()
        except RedisError as exc:
            raise StateError(f"cannot use {state_backend(settings)} (REDIS_URL): {exc}") from exc
        yield client
    finally:
        await client.aclose()


async def redis_check(redis: Redis) -> str:
    """For /readyz: "ok" or why not."""
    try:
        await asyncio.wait_for(redis.ping(), _TIMEOUT)
    except (RedisError, TimeoutError) as exc:
        return f"unavailable: {exc or 'no reply'}"
    return "ok"


async def shared_secret(redis: Redis, name: str) -> str:
    """A random secret made once for every replica: the first SET NX wins and everyone reads the winner."""
    with redis_errors(f"reading the shared {name} secret"):
        await redis.set(redis_key("secret", name), secrets.token_urlsafe(32), nx=True)
        value = await redis.get(redis_key("secret", name))
    if not isinstance(value, str):
        raise StateError(f"the shared {name} secret vanished from Redis (evicted?): restart to make a new one")
    return value
