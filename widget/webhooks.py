"""The chat platforms' webhooks on the web server: POST /slack/events with SLACK_MODE=http, POST
/telegram/webhook with TELEGRAM_MODE=webhook, GET and POST /whatsapp/webhook with WHATSAPP_ACCESS_TOKEN, POST
/teams/messages with TEAMS_APP_ID and TEAMS_APP_PASSWORD. Each platform's handler (bots.webhooks) is started in
the app's lifespan, once the assistant is open, and stopped on shutdown; its route hands it the raw request (a
platform that verifies its URL first gets a GET route too).
Platform libraries are imported only when that platform is configured. The platforms' settings are their own
(bots.settings): the composition root reads them (`Webhooks.from_environment`) and hands them to the app.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI, Request, Response

from bots.settings import SlackSettings, TeamsSettings, TelegramSettings, WhatsAppSettings
from bots.webhooks import Verified, Webhook, WebhookHandler
from core.answer.assistant import Assistant
from core.shared_state import SharedState


def configured(
    slack: SlackSettings | None,
    telegram: TelegramSettings | None,
    whatsapp: WhatsAppSettings | None = None,
    teams: TeamsSettings | None = None,
) -> list[Webhook]:
    """The webhooks the settings ask for; a platform's missing credential is a ConfigError here, before serving."""
    webhooks: list[Webhook] = []
    if slack is not None and slack.mode == "http" and slack.bot_token:
        from bots.slack import SlackWebhook

        webhooks.append(SlackWebhook(slack))
    if telegram is not None and telegram.mode == "webhook" and telegram.bot_token:
        from bots.telegram import TelegramWebhook

        webhooks.append(TelegramWebhook(telegram))
    if whatsapp is not None and whatsapp.access_token:
        from bots.whatsapp import WhatsAppWebhook

        webhooks.append(WhatsAppWebhook(whatsapp))
    if teams is not None and (teams.app_id or teams.app_password):
        from bots.teams import TeamsWebhook

        webhooks.append(TeamsWebhook(teams))
    return webhooks


class Webhooks:
    """The configured platforms' routes, their body limits, and their handlers while the app runs. Without
    a platform's settings, it has no webhook."""

    def __init__(
        self,
        *,
        slack: SlackSettings | None = None,
        telegram: TelegramSettings | None = None,
        whatsapp: WhatsAppSettings | None = None,
        teams: TeamsSettings | None = None,
    ):
        self.webhooks = configured(slack, telegram, whatsapp, teams)
        self.handlers: dict[str, WebhookHandler] = {}

    @classmethod
    def from_environment(cls) -> Webhooks:
        """The webhooks SLACK_*, TELEGRAM_*, WHATSAPP_* and TEAMS_* (environment, `.env`) ask for: what
        `switchboard serve` runs."""
        return cls(
            slack=SlackSettings(), telegram=TelegramSettings(), whatsapp=WhatsAppSettings(), teams=TeamsSettings()
        )

    @property
    def body_limits(self) -> dict[str, int]:
        """Paths whose requests may exceed MAX_BODY_BYTES (pattern → bytes, for widget.app.BodyLimit)."""
        return {re.escape(w.path): w.max_body_bytes for w in self.webhooks if w.max_body_bytes is not None}

    def install(self, app: FastAPI) -> None:
        for webhook in self.webhooks:
            app.add_api_route(webhook.path, self._endpoint(webhook.path), methods=["POST"], include_in_schema=False)
            if isinstance(webhook, Verified):
                app.add_api_route(webhook.path, _verification(webhook), methods=["GET"], include_in_schema=False)

    @asynccontextmanager
    async def serve(self, assistant: Assistant, state: SharedState) -> AsyncIterator[None]:
        """Start every handler (in the app's lifespan); on shutdown stop them, the last started first."""
        async with AsyncExitStack() as stack:
            for webhook in self.webhooks:
                self.handlers[webhook.path] = await stack.enter_async_context(webhook.open(assistant, state))
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


def _verification(webhook: Verified) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        reply = webhook.verify(request.query_params)
        return Response(reply.body, reply.status, dict(reply.headers), media_type=reply.content_type)

    return endpoint
