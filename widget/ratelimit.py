"""Per-session and per-IP rate limits with the `limits` library (moving window, in memory).

A shared store (Redis) for several replicas is the same library with another storage URI.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimits:
    def __init__(self, per_session: str, per_ip: str, per_key: str):
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._rules: dict[str, RateLimitItem] = {
            "session": parse(per_session),
            "ip": parse(per_ip),
            "key": parse(per_key),
        }

    def hit(self, kind: str, key: str) -> int | None:
        """Count one request; None if allowed, else the seconds to wait (for Retry-After)."""
        rule = self._rules[kind]
        if self._limiter.hit(rule, kind, key):
            return None
        reset_at, _ = self._limiter.get_window_stats(rule, kind, key)
        return max(1, math.ceil(reset_at - time.time()))
