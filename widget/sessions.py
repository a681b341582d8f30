"""Short-lived signed session tokens for widget pages (itsdangerous), and verified host-site identities.

A page holds no secret: it asks the server for a token, which the server only mints for origins allowed to
embed the bot. The token names the bot, an anonymous session id, the verified user id (if any) and the origin,
and expires after SESSION_TTL_SECONDS; an expired token can be renewed into the same session for
SESSION_RENEW_DAYS so history survives. Tokens are stateless: replicas only need the same signing secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from redis.asyncio import Redis

from core.process import secret_file
from core.shared_state import shared_secret
from widget.settings import WebSettings


class TokenError(Exception):
    def __init__(self, message: str, *, expired: bool = False):
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True, kw_only=True)
class Session:
    bot: str
    session_id: str
    user_id: str | None
    origin: str

    @property
    def identity(self) -> str:
        """Whose history this is: a verified user follows across browsers, otherwise the browser session."""
        return f"u:{_key_part(self.user_id)}" if self.user_id else f"s:{_key_part(self.session_id)}"

    def conversation_key(self, conversation_id: str) -> str:
        """Scoped to the caller: one identity can never address another's conversation (and with an empty id, the
        prefix of all of theirs)."""
        return f"{_key_part(self.bot)}:{self.identity}:{_key_part(conversation_id)}"


def _key_part(value: str) -> str:
    """One component of a conversation key, with `%` and the `:` separator percent-encoded, so that user
    `bob:admin`'s key never starts with user `bob`'s. Only those two characters change: ids without them (emails
    included) keep the keys, and the history, they had before."""
    return value.replace("%", "%25").replace(":", "%3A")


async def signing_secret(settings: WebSettings, redis: Redis | None) -> str:
    """SWITCHBOARD_SECRET_KEY (required in production); in development one made once, in Redis for every replica
    or in the data directory for one machine."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    if redis is not None:
        return await shared_secret(redis, "session")
    return secret_file(settings.data_dir / "session-secret")


class SessionTokens:
    def __init__(self, secret: str, ttl: int, renew_seconds: int):
        self._serializer = URLSafeTimedSerializer(secret, salt="switchboard.widget.session")
        self.ttl = ttl
        self._renew = renew_seconds

    def mint(self, *, bot: str, origin: str, user_id: str | None, previous: str | None) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(16)
        if previous:
            try:  # keep the same anonymous session (and its history) when renewing
                old = self._load(previous, self._renew)
                if old.bot == bot and old.origin == origin:
                    session_id = old.session_id
            except TokenError:
                pass
        session = Session(bot=bot, session_id=session_id, user_id=user_id, origin=origin)
        token = self._serializer.dumps({"b": bot, "s": session_id, "u": user_id, "o": origin})
        return token, session

    def verify(self, token: str) -> Session:
        return self._load(token, self.ttl)

    def _load(self, token: str, max_age: int) -> Session:
        try:
            data = self._serializer.loads(token, max_age=max_age)
        except SignatureExpired as exc:
            raise TokenError("session token expired; request a new one", expired=True) from exc
        except BadSignature as exc:
            raise TokenError("invalid session token") from exc
        try:
            return Session(bot=data["b"], session_id=data["s"], user_id=data["u"], origin=data["o"])
        except (KeyError, TypeError) as exc:
            raise TokenError("invalid session token") from exc


def identity_hash(user_id: str, secret: str) -> str:
    """What the host site's backend computes to vouch for a logged-in user (hex HMAC-SHA256)."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def verify_identity(user_id: str, given_hash: str, secret: str) -> bool:
    return hmac.compare_digest(identity_hash(user_id, secret), given_hash.lower())
