"""Both directions of Bot Framework authentication, with PyJWT and httpx.

Inbound: every request Teams sends carries `Authorization: Bearer <JWT>`, signed by the Bot Framework (RS256,
keys published at the `jwks_uri` of TEAMS_OPENID_URL), issued by https://api.botframework.com, for the bot's
app id. It is checked on the raw header, before the body is read; then the activity must match it: its
serviceUrl must be the one the token names (so a token for one service cannot send the bot's own token
somewhere else), and its channelId one that the signing key is endorsed for (each key in the JWKS lists the
channels it may sign for in `endorsements`, so a key for one channel cannot vouch for another's activities;
as in the Bot Framework SDKs, a key without `endorsements` is not restricted; a key id missing from the map, or
endorsements that are not a list, are refused).

Outbound: the Bot Connector API wants the bot's own token, obtained with client credentials from the login
endpoint (the bot's tenant, or botframework.com for a multi-tenant bot) and reused until shortly before it
expires.

Why not the Microsoft 365 Agents SDK (microsoft-agents-hosting-core 1.9): its JwtTokenValidator takes the
JWKS address from constants (login.botframework.com / login.microsoftonline.com, chosen by the token's own
issuer), so the validation cannot be pointed at a test issuer without patching the library, and it checks the
issuer only when told to; its MSAL token provider insists on an https authority. These ~130 lines do what the
protocol asks and run against the loopback fake unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

logger = logging.getLogger(__name__)

ISSUER = "https://api.botframework.com"
SCOPE = "https://api.botframework.com/.default"
LEEWAY = 300  # seconds of clock skew the Bot Framework SDKs allow
METADATA_TTL = 24 * 3600  # seconds: Microsoft rotates its keys rarely; an unknown key id refetches sooner
TOKEN_MARGIN = 300  # seconds before expiry that a cached token is renewed
_UNKNOWN: Any = object()  # a key id absent from the endorsements map (not the same as a key listing none)


class Unauthorized(Exception):
    """Why a request is not the Bot Framework's (the 401's reason)."""


@dataclass(frozen=True)
class Verified:
    """A request's verified token: its claims, and the channels its signing key is endorsed for (None: any)."""

    claims: dict[str, Any]
    endorsements: frozenset[str] | None

    def check(self, *, service_url: str, channel_id: str) -> None:
        """Raises Unauthorized unless the activity (its serviceUrl and channelId) is one this token may send."""
        if self.claims.get("serviceurl") != service_url:
            raise Unauthorized("the activity's serviceUrl is not the one its token was issued for")
        if self.endorsements is not None and channel_id not in self.endorsements:
            raise Unauthorized(f"the token's signing key is not endorsed for channel {channel_id!r}")


class _KeySet(jwt.PyJWKClient):
    """PyJWKClient keeping what its PyJWK objects drop: each key's `endorsements`, by key id."""

    def __init__(self, uri: str, **options: Any):
        super().__init__(uri, **options)
        self.endorsements: dict[str, frozenset[str] | None] = {}

    def fetch_data(self) -> Any:  # PyJWKClient's documented hook: every (re)fetch of the key set goes through it
        data = super().fetch_data()
        keys = data.get("keys")  # PyJWKSet rejects a set without a list of keys after this returns
        self.endorsements = {
            str(k["kid"]): _endorsements(k)
            for k in (keys if isinstance(keys, list) else [])
            if isinstance(k, dict) and "kid" in k
        }
        return data


def _endorsements(jwk: dict[str, Any]) -> frozenset[str] | None:
    """The channels a published key may sign for: None (any) only for a key without `endorsements`; a value
    that is not a list endorses nothing, so that a malformed entry fails closed."""
    if "endorsements" not in jwk:
        return None
    listed = jwk["endorsements"]
    return frozenset(map(str, listed)) if isinstance(listed, list) else frozenset()


class InboundAuth:
    """Checks Teams' bearer tokens against the published signing keys, the issuer and the bot's app id."""

    def __init__(self, http: httpx.AsyncClient, *, openid_url: str, app_id: str):
        self.http = http
        self.openid_url = openid_url
        self.app_id = app_id
        self._keys: _KeySet | None = None
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    async def _jwks(self) -> _KeySet:
        async with self._lock:
            if self._keys is None or time.monotonic() - self._fetched > METADATA_TTL:
                response = await self.http.get(self.openid_url)
                response.raise_for_status()
                # PyJWKClient caches the key set and refetches it for a key id it has not seen, at most once per
                # cooldown: tokens with made-up key ids cannot turn into a stream of requests to Microsoft.
                self._keys = _KeySet(
                    response.json()["jwks_uri"],
                    cache_keys=True,
                    lifespan=METADATA_TTL,
                    timeout=10,
                    cooldown_duration=60,
                )
                self._fetched = time.monotonic()
            return self._keys

    async def verify(self, headers: Mapping[str, str]) -> Verified:
        """The request's token, verified; raises Unauthorized with the reason."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing Authorization: Bearer token")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed token: {exc}") from None
        if header.get("alg") != "RS256":  # "none" and HMAC tokens are forgeries here
            raise Unauthorized(f"token algorithm {header.get('alg')!r} is not RS256")
        try:
            keys = await self._jwks()
            # The key set is fetched with urllib (PyJWKClient): off the event loop.
            key = await asyncio.to_thread(keys.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientError as exc:
            raise Unauthorized(f"token not signed by a published key: {exc}") from None
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            logger.warning("could not read Teams' signing keys from %s: %s", self.openid_url, exc)
            raise Unauthorized("the signing keys could not be read") from None
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.app_id,
                issuer=ISSUER,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        # The map is replaced whenever the key set is refetched (in a worker thread): a key id missing from it
        # is not known to be unrestricted, so it is refused rather than let through.
        endorsements = keys.endorsements.get(str(key.key_id), _UNKNOWN)
        if endorsements is _UNKNOWN:
            raise Unauthorized("the token's signing key has no known endorsements")
        return Verified(claims, endorsements)


class BotToken:
    """The bot's own access token for the Bot Connector API (client credentials), cached until near expiry."""

    def __init__(self, http: httpx.AsyncClient, *, token_url: str, app_id: str, password: str):
        self.http = http
        self.token_url = token_url
        self.form = {"grant_type": "client_credentials", "client_id": app_id, "client_secret": password, "scope": SCOPE}
        self._token = ""
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        async with self._lock:  # concurrent answers share one token request
            if time.monotonic() >= self._expires - TOKEN_MARGIN:
                response = await self.http.post(self.token_url, data=self.form)
                response.raise_for_status()
                body = response.json()
                self._token = str(body["access_token"])
                self._expires = time.monotonic() + float(body.get("expires_in", 3600))
            return self._token

    def forget(self) -> None:
        """After a 401 from the connector: the next call asks for a new token."""
        self._expires = 0.0


def token_url(login_url: str, tenant_id: str | None) -> str:
    return f"{login_url.rstrip('/')}/{tenant_id or 'botframework.com'}/oauth2/v2.0/token"
