"""Per-session, per-IP and per-API-key rate limits with the `limits` library (moving window, asyncio API).

In memory for one process; with REDIS_URL in Redis, so every replica counts against the same window. The Redis
storage borrows the process's connection pool (core.shared_state) rather than opening its own.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from core.shared_state import redis_errors, redis_key
from widget.settings import WebSettings


class RateLimits:
    def __init__(self, storage: Storage, *, per_session: str, per_ip: str, per_key: str):
        self._limiter = MovingWindowRateLimiter(storage)
        self._rules: dict[str, RateLimitItem] = {
            "session": parse(per_session),
            "ip": parse(per_ip),
            "key": parse(per_key),
            "bad-key": parse(per_ip),  # failed API-key attempts per address: a budget the size of the IP limit
        }

    async def hit(self, kind: str, key: str) -> int | None:
        """Count one request; None if allowed, else the seconds to wait (for Retry-After)."""
        rule = self._rules[kind]
        with redis_errors("counting a request against the rate limits"):
            if await self._limiter.hit(rule, kind, key):
                return None
            reset_at, _ = await self._limiter.get_window_stats(rule, kind, key)
        return max(1, math.ceil(reset_at - time.time()))


def create_rate_limits(settings: WebSettings, redis: Redis | None) -> RateLimits:
    storage: Storage = MemoryStorage()
    if redis is not None:
        storage = RedisStorage(
            "async+redis://",  # the pool below says where
            implementation="redispy",
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # typed narrowly; passed on to redis-py
            key_prefix=redis_key("ratelimit"),
        )
    return RateLimits(
        storage,
        per_session=settings.rate_limit_session,
        per_ip=settings.rate_limit_ip,
        per_key=settings.rate_limit_api_key,
    )
