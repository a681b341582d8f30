"""The chat platforms that deliver events over HTTP get their endpoints on the web server (`switchboard serve`).

Each platform's router carries its own lifespan, which FastAPI runs inside the app's: by then the assistant
is open (app.state.switchboard), so the platform client is built once, from it, and closed on shutdown.
Platform libraries are imported only when that platform is configured.
"""

from __future__ import annotations

from fastapi import APIRouter

from core.config import Settings

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
