"""The chat platforms that deliver events over HTTP get their endpoints on the web server (`switchboard serve`).

Each platform's router carries its own lifespan, which FastAPI runs inside the app's: by then the assistant
is open (app.state.switchboard), so the platform client is built once, from it, and closed on shutdown.
Platform libraries are imported only when that platform is configured.

What every webhook does before its platform library sees a request: check the platform's credentials on the
raw request (401/403), then refuse a body the library cannot read (400), each with one log line.
"""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, HTTPException
from pydantic import ValidationError

from core.config import Settings

logger = logging.getLogger(__name__)

# What the platform libraries' parsers raise for JSON of a shape they did not expect (they index, iterate and
# call .get() on whatever arrives, so the error is whichever the first wrong value causes).
UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, IndexError)

# Paths whose requests may exceed MAX_BODY_BYTES (pattern → bytes, for widget.app.BodyLimit): a Slack button
# click carries the whole answer message twice (text and blocks), URL-encoded: ~30 KB in a non-Latin script.
WEBHOOK_BODY_LIMITS = {"/slack/events": 64 * 1024}


def webhook_routers(settings: Settings) -> list[APIRouter]:
    routers: list[APIRouter] = []
    if settings.slack_mode == "http" and settings.slack_bot_token:
        from bots.slack import http_router

        routers.append(http_router(settings))
    if settings.telegram_mode == "webhook" and settings.telegram_bot_token:
        from bots.telegram import webhook_router

        routers.append(webhook_router(settings))
    return routers


def same_secret(given: str | None, expected: str) -> bool:
    """Whether a header carries the expected secret, in constant time. Compared as bytes: on strings,
    hmac.compare_digest raises for non-ASCII characters, which whoever sends the request chooses."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def refuse(platform: str, status: int, reason: str) -> HTTPException:
    """A webhook request turned away: one log line, no traceback, and the reason in the 4xx response."""
    logger.warning("%s webhook: refused a request (%d): %s", platform, status, reason)
    return HTTPException(status, reason)


def unreadable(platform: str, error: Exception) -> HTTPException:
    """400 for an authenticated body that is not the platform's payload, with the first problem found."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        reason = f"{where}: {first['msg']}"
    else:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return refuse(platform, 400, f"not a {platform.capitalize()} payload: {reason}")
