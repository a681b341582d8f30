"""Both directions of Bot Framework authentication, with PyJWT and httpx.

Inbound: every request Teams sends carries `Authorization: Bearer <JWT>`, signed by the Bot Framework (RS256,
keys published at the `jwks_uri` of TEAMS_OPENID_URL), issued by https://api.botframework.com, for the bot's
app id. It is checked on the raw header, before the body is read; the activity's serviceUrl must then be the
one the token names (so a token for one service cannot send the bot's own token somewhere else).

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
from typing import Any

import httpx
import jwt

logger = logging.getLogger(__name__)

ISSUER = "https://api.botframework.com"
SCOPE = "https://api.botframework.com/.default"
LEEWAY = 300  # seconds of clock skew the Bot Framework SDKs allow
METADATA_TTL = 24 * 3600  # seconds: Microsoft rotates its keys rarely; an unknown key id refetches sooner
TOKEN_MARGIN = 300  # seconds before expiry that a cached token is renewed


class Unauthorized(Exception):
    """Why a request is not the Bot Framework's (the 401's reason)."""


class InboundAuth:
    """Checks Teams' bearer tokens against the published signing keys, the issuer and the bot's app id."""

    def __init__(self, http: httpx.AsyncClient, *, openid_url: str, app_id: str):
        self.http = http
        self.openid_url = openid_url
        self.app_id = app_id
        self._keys: jwt.PyJWKClient | None = None
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    async def _jwks(self) -> jwt.PyJWKClient:
        async with self._lock:
            if self._keys is None or time.monotonic() - self._fetched > METADATA_TTL:
                response = await self.http.get(self.openid_url)
                response.raise_for_status()
                # PyJWKClient caches the key set and refetches it for a key id it has not seen, at most once per
                # cooldown: tokens with made-up key ids cannot turn into a stream of requests to Microsoft.
                self._keys = jwt.PyJWKClient(
                    response.json()["jwks_uri"],
                    cache_keys=True,
                    lifespan=METADATA_TTL,
                    timeout=10,
                    cooldown_duration=60,
                )
                self._fetched = time.monotonic()
            return self._keys

    async def claims(self, headers: Mapping[str, str]) -> dict[str, Any]:
        """The verified claims of the request's token; raises Unauthorized with the reason."""
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
            return jwt.decode(
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
