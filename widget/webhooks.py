"""The chat platforms' webhooks on the web server: POST /slack/events with SLACK_MODE=http, POST
/telegram/webhook with TELEGRAM_MODE=webhook. Each platform's handler (bots.webhooks) is started in the app's
lifespan, once the assistant is open, and stopped on shutdown; its route hands it the raw request.
Platform libraries are imported only when that platform is configured.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request, Response

from bots.webhooks import Webhook, WebhookHandler
from core.answer.assistant import Assistant
from core.config import Settings


def configured(settings: Settings) -> list[Webhook]:
    """The webhooks the settings ask for; a platform's missing credential is a ConfigError here, before serving."""
    webhooks: list[Webhook] = []
    if settings.slack_mode == "http" and settings.slack_bot_token:
        from bots.slack import SlackWebhook

        webhooks.append(SlackWebhook(settings))
    if settings.telegram_mode == "webhook" and settings.telegram_bot_token:
        from bots.telegram import TelegramWebhook

        webhooks.append(TelegramWebhook(settings))
    return webhooks


class Webhooks:
    """The configured platforms' routes, their body limits, and their handlers while the app runs."""

    def __init__(self, settings: Settings):
        self.webhooks = configured(settings)
        self.handlers: dict[str, WebhookHandler] = {}

    @property
    def body_limits(self) -> dict[str, int]:
        """Paths whose requests may exceed MAX_BODY_BYTES (pattern → bytes, for widget.app.BodyLimit)."""
        return {re.escape(w.path): w.max_body_bytes for w in self.webhooks if w.max_body_bytes is not None}

    def install(self, app: FastAPI) -> None:
        for webhook in self.webhooks:
            app.add_api_route(webhook.path, self._endpoint(webhook.path), methods=["POST"], include_in_schema=False)

    @asynccontextmanager
    async def serve(self, assistant: Assistant) -> AsyncIterator[None]:
        """Start every handler (in the app's lifespan); on shutdown stop them, the last started first."""
        async with AsyncExitStack() as stack:
            for webhook in self.webhooks:
                self.handlers[webhook.path] = await stack.enter_async_context(webhook.open(assistant))
            try:
                yield
            finally:
                self.handlers.clear()

    def _endpoint(self, path: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            handler = self.handlers.get(path)
            if handler is None:
                raise RuntimeError("the webhooks run only inside the app's lifespan")
            reply = await handler(await request.body(), request.headers)
            return Response(reply.body, reply.status, dict(reply.headers), media_type=reply.content_type)

        return endpoint
