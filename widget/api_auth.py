"""The API-key gate of /v1 and /mcp: authentication and rate limits, one policy for both surfaces.

A request with a valid key counts against that key's limit only: a server-side integration sends all its
traffic from one address, so the per-address limit must not cap it, and a stale or revoked key used from the
same address must not lock the valid one out. Failed attempts count against the caller's address: over that
budget they get 429 instead of 401. Each surface renders `KeyRefused` in its own error shape.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from widget.apikeys import ApiKey
from widget.deps import ServerState, bearer

logger = logging.getLogger(__name__)


@dataclass(kw_only=True, eq=False)  # not frozen: raising sets attributes on an exception
class KeyRefused(Exception):
    status: int  # 401 or 429
    reason: str
    missing: bool = False  # no credential at all (rather than a wrong one)
    retry_after: int | None = None


async def authenticate(state: ServerState, authorization: str | None, ip: str) -> ApiKey:
    """The caller's key, counted against its rate limit; raises KeyRefused."""
    plain = bearer(authorization)
    if plain is None:
        raise KeyRefused(status=401, reason="missing API key", missing=True)
    key = await state.api_keys.verify(plain)
    if key is None:
        if (wait := await state.limits.hit("bad-key", ip)) is not None:
            logger.warning("refusing API-key attempts from %s: too many invalid keys", ip)
            reason = f"too many invalid API keys from this address; retry in {wait} seconds"
            raise KeyRefused(status=429, reason=reason, retry_after=wait)
        raise KeyRefused(status=401, reason="invalid or revoked API key")
    if (wait := await state.limits.hit("key", key.id)) is not None:
        raise KeyRefused(status=429, reason=f"rate limit reached; retry in {wait} seconds", retry_after=wait)
    return key
