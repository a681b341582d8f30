"""A fake Microsoft Teams on loopback, speaking the real protocols: the Entra token endpoint (client
credentials), the Bot Framework's OpenID metadata and JWKS (a locally generated RSA key endorsed for msteams,
which also signs the activities tests send, and `webchat_key`, endorsed only for webchat), and the Bot
Connector REST API v3 (send an activity to a conversation, reply to one, update one). Every connector call is
recorded with its bearer token; a wrong token gets a 401.

Teams' streaming protocol is checked as documented: streaming activities are typing activities with a
streaminfo entity, the first informative without a stream id, later ones naming the stream with a growing
streamSequence; the final message names the stream, and a stream takes nothing after it. `refuse_streams`
answers every new stream with 403, as Teams does where streaming is not allowed.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.rest import AioService, wait_until

APP_ID = "00000000-0000-4000-8000-00000000b07a"
APP_PASSWORD = "test-app-password"
TENANT = "11111111-2222-4333-8444-555555555555"
ISSUER = "https://api.botframework.com"
KEY_ID = "fake-key-1"
WEBCHAT_KEY_ID = "fake-key-webchat"  # a Bot Framework key that signs only for another channel
MALFORMED_KEY_ID = "fake-key-malformed"  # a key whose `endorsements` is not a list: endorsed for nothing
BOT = f"28:{APP_ID}"  # the bot's account in activities


@dataclass
class Call:
    method: str  # POST or PUT
    conversation: str
    activity_id: str | None  # replied to (POST) or updated (PUT)
    body: dict[str, Any]
    token: str
    status: int
    id: str  # the activity's id, as returned
    at: float = field(default_factory=time.perf_counter)  # when it arrived


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    return jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)


@dataclass
class FakeTeams(AioService):
    calls: list[Call] = field(default_factory=list)
    tokens_issued: list[str] = field(default_factory=list)
    refuse_streams: bool = False
    keys_fetched: int = 0  # GETs of the JWKS
    rate_limited: int = 0  # how many Bot Connector calls are still to be answered 429 (Retry-After: 0)
    key: rsa.RSAPrivateKey = field(default_factory=_key)
    webchat_key: rsa.RSAPrivateKey = field(default_factory=_key)
    malformed_key: rsa.RSAPrivateKey = field(default_factory=_key)
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)  # stream id → sequence, finished
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def service_url(self) -> str:
        return f"{self.url}/teams/"

    @property
    def openid_url(self) -> str:
        return f"{self.url}/v1/.well-known/openidconfiguration"

    # --- the tokens Teams sends with each activity --------------------------------------------------------

    def token(
        self,
        *,
        key: rsa.RSAPrivateKey | None = None,
        audience: str = APP_ID,
        issuer: str = ISSUER,
        expires_in: int = 3600,
        service_url: str | None = None,
        kid: str = KEY_ID,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": audience,
            "iat": now - 10,
            "nbf": now - 10,
            "exp": now + expires_in,
            "serviceurl": service_url or self.service_url,
        }
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": kid})

    def activity(
        self,
        text: str,
        *,
        scope: str = "personal",
        conversation: str | None = None,
        mention: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        """A message activity as Teams sends it; with `mention`, the text starts with the bot's <at> mention."""
        n = next(self._ids)
        activity_id = f"17000000{n:05d}"
        if conversation is None:
            conversation = {"personal": f"a:personal{n}", "groupChat": f"19:group{n}@thread.v2"}.get(
                scope, f"19:channel{n}@thread.tacv2;messageid={activity_id}"
            )
        entities: list[dict[str, Any]] = [{"type": "clientInfo", "locale": "en-US"}]
        if mention:
            text = f"<at>Switchboard</at> {text}"
            entities.append(
                {"type": "mention", "text": "<at>Switchboard</at>", "mentioned": {"id": BOT, "name": "Switchboard"}}
            )
        return {
            "type": "message",
            "id": activity_id,
            "timestamp": "2026-12-06T10:00:00.000Z",
            "serviceUrl": self.service_url,
            "channelId": "msteams",
            "from": {"id": "29:alice", "name": "Alice", "aadObjectId": "a1"},
            "conversation": {"id": conversation, "conversationType": scope, "tenantId": TENANT},
            "recipient": {"id": BOT, "name": "Switchboard"},
            "textFormat": "plain",
            "text": text,
            "entities": entities,
            "channelData": {"tenant": {"id": TENANT}},
            **extra,
        }

    def revoke_tokens(self) -> None:
        """Every token issued so far stops working, as an expired one does."""
        with self._lock:
            self.tokens_issued.clear()

    # --- inspection ---------------------------------------------------------------------------------------

    def of(self, conversation: str | None = None, **match: Any) -> list[Call]:
        with self._lock:
            calls = list(self.calls)
        return [
            c
            for c in calls
            if (conversation is None or c.conversation == conversation)
            and all(c.body.get(k) == v for k, v in match.items())
        ]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        return wait_until(predicate, timeout, lambda: [(c.method, c.body) for c in self.calls])

    # --- the server ---------------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/v1/.well-known/openidconfiguration", self._openid)
        app.router.add_get("/v1/.well-known/keys", self._keys)
        app.router.add_post("/teams/v3/conversations/{conversation}/activities", self._activity)
        app.router.add_post("/teams/v3/conversations/{conversation}/activities/{id}", self._activity)
        app.router.add_put("/teams/v3/conversations/{conversation}/activities/{id}", self._activity)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != APP_ID
            or form.get("client_secret") != APP_PASSWORD
            or form.get("scope") != "https://api.botframework.com/.default"
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        token = f"bot-token-{uuid.uuid4().hex}"
        with self._lock:
            self.tokens_issued.append(token)
        return web.json_response(
            {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        )

    async def _openid(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": ISSUER,
                "authorization_endpoint": f"{self.url}/v1/.well-known/authorize",
                "jwks_uri": f"{self.url}/v1/.well-known/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            }
        )

    async def _keys(self, request: web.Request) -> web.Response:
        self.keys_fetched += 1
        keys = [
            {**_jwk(self.key), "kid": KEY_ID, "use": "sig", "endorsements": ["msteams"]},
            {**_jwk(self.webchat_key), "kid": WEBCHAT_KEY_ID, "use": "sig", "endorsements": ["webchat"]},
            {**_jwk(self.malformed_key), "kid": MALFORMED_KEY_ID, "use": "sig", "endorsements": "msteams"},
        ]
        return web.json_response({"keys": keys})

    async def _activity(self, request: web.Request) -> web.Response:
        conversation, activity_id = request.match_info["conversation"], request.match_info.get("id")
        body = await request.json()
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        new_id = activity_id if activity_id and request.method == "PUT" else f"1{next(self._ids):012d}"
        status = 200
        if token not in self.tokens_issued:
            status = 401
        elif self.rate_limited > 0:
            self.rate_limited -= 1
            status = 429
        elif request.method == "POST":
            status = self._stream(body, new_id)
        with self._lock:
            self.calls.append(Call(request.method, conversation, activity_id, body, token, status, new_id))
        if status != 200:
            headers = {"Retry-After": "0"} if status == 429 else {}
            error = {"error": {"code": "Rejected", "message": f"status {status}"}}
            return web.json_response(error, status=status, headers=headers)
        return web.json_response({"id": new_id}, status=200 if request.method == "PUT" else 201)

    def _stream(self, body: dict[str, Any], new_id: str) -> int:
        """Teams' streaming rules; 400 for a broken one, 403 when refused."""
        info = next((e for e in body.get("entities") or [] if e.get("type") == "streaminfo"), None)
        if info is None:
            return 200
        kind, stream_id = info.get("streamType"), info.get("streamId")
        if kind == "informative" and stream_id is None:
            if self.refuse_streams:
                return 403
            if body.get("type") != "typing" or info.get("streamSequence") != 1:
                return 400
            self.streams[new_id] = {"sequence": 1, "finished": False}
            return 200
        stream = self.streams.get(str(stream_id))
        if stream is None or stream["finished"]:
            return 400
        if kind == "final":
            if body.get("type") != "message":
                return 400
            stream["finished"] = True
            return 200
        if body.get("type") != "typing" or info.get("streamSequence", 0) <= stream["sequence"]:
            return 400
        stream["sequence"] = info["streamSequence"]
        return 200
