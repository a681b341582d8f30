"""The chat platforms that deliver events over HTTP (Slack's Events API, Telegram's and WhatsApp's webhooks),
without the web framework: the web server mounts them (`switchboard serve`).

A `Webhook` is one platform's endpoint as configured: its path and body limit, checked when the server is
built (no I/O). `open(assistant)` builds the platform client once, from the open assistant, and closes it on
shutdown; the `WebhookHandler` it yields turns one request (the raw body and headers) into a `WebhookReply`.

What every handler does before its platform library sees a request: check the platform's credentials on the
raw request (401/403), then refuse a body the library cannot read (400), each with one log line.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from core.answer.assistant import Assistant
from core.shared_state import SharedState

logger = logging.getLogger(__name__)

# What the platform libraries' parsers raise for JSON of a shape they did not expect (they index, iterate and
# call .get() on whatever arrives, so the error is whichever the first wrong value causes).
UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, IndexError)


@dataclass(frozen=True, kw_only=True)
class WebhookReply:
    """The HTTP response to one webhook request."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, content: Any) -> WebhookReply:
        return cls(status=status, body=json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode())


# One request: its raw body and its headers (looked up by lower-case name) → the reply.
WebhookHandler = Callable[[bytes, Mapping[str, str]], Awaitable[WebhookReply]]


class Webhook(Protocol):
    """A platform's HTTP endpoint (POST `path`), configured but not started."""

    path: str
    # The largest request body it takes; None: the server's MAX_BODY_BYTES.
    max_body_bytes: int | None

    def open(self, assistant: Assistant, state: SharedState) -> AbstractAsyncContextManager[WebhookHandler]:
        """The platform client, started from the assistant and the process's shared state while the server runs,
        then stopped."""
        ...


@runtime_checkable
class Verified(Protocol):
    """A webhook whose platform first checks the URL with a GET (WhatsApp's hub.challenge handshake)."""

    def verify(self, query: Mapping[str, str]) -> WebhookReply:
        """The reply to GET `path` with these query parameters."""
        ...


def same_secret(given: str | None, expected: str) -> bool:
    """Whether a header carries the expected secret, in constant time. Compared as bytes: on strings,
    hmac.compare_digest raises for non-ASCII characters, which whoever sends the request chooses."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def refuse(platform: str, status: int, reason: str) -> WebhookReply:
    """A webhook request turned away: one log line, no traceback, and the reason in the 4xx response."""
    logger.warning("%s webhook: refused a request (%d): %s", platform, status, reason)
    return WebhookReply.json(status, {"detail": reason})


def unreadable(platform: str, error: Exception) -> WebhookReply:
    """400 for an authenticated body that is not the platform's payload, with the first problem found."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        reason = f"{where}: {first['msg']}"
    else:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return refuse(platform, 400, f"not a {platform.capitalize()} payload: {reason}")
