"""The bolt app with every listener, and Socket Mode (`switchboard bot slack`); the HTTP Events API is
bots.slack.webhook's."""

from __future__ import annotations

import logging

from pydantic import SecretStr
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bots.base import Responder, open_bot
from bots.settings import SlackSettings, SlackTable
from bots.slack.listeners import SlackBot
from core.answer.assistant import Assistant
from core.config import Settings
from core.errors import ConfigError
from core.shared_state import SharedState
from core.shutdown import sigterm

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


def required(secret: SecretStr | None, name: str, prefix: str = "") -> str:
    value = secret.get_secret_value() if secret is not None else ""
    if not value:
        raise ConfigError(f'{name} is not set: see README "Chat bots › Slack"')
    if not value.startswith(prefix):
        raise ConfigError(f"{name} must start with {prefix} (Slack app settings › OAuth / Basic Information)")
    return value


def slack_app(slack: SlackSettings, assistant: Assistant, state: SharedState) -> AsyncApp:
    """The bolt app with every listener. It verifies nothing itself: in HTTP mode `SlackWebhook` checks each
    request before bolt parses it; Socket Mode has no requests to verify (its websocket was opened with the
    app-level token)."""
    client = AsyncWebClient(
        token=required(slack.bot_token, "SLACK_BOT_TOKEN", "xoxb-"),
        base_url=slack.api_url,
        retry_handlers=[AsyncConnectionErrorRetryHandler(), AsyncRateLimitErrorRetryHandler(max_retry_count=3)],
    )
    app = AsyncApp(
        client=client,
        signing_secret="",
        request_verification_enabled=False,
        logger=logger,
    )
    responder = Responder(assistant, state, platform="slack", default_bot=slack.bot, table=SlackTable)
    SlackBot(responder, ask_ephemeral=slack.ask_ephemeral, native=slack.streaming == "native").register(app)
    return app


async def run(settings: Settings, slack: SlackSettings) -> None:
    """Socket Mode until SIGTERM (then disconnect and let the answers in flight finish) or Ctrl-C; slack_sdk
    reconnects a dropped websocket by itself."""
    if slack.mode == "http":
        raise ConfigError(f"SLACK_MODE=http: Slack's requests are served by `switchboard serve` at {EVENTS_PATH}")
    app_token = required(slack.app_token, "SLACK_APP_TOKEN", "xapp-")
    required(slack.bot_token, "SLACK_BOT_TOKEN", "xoxb-")  # before the slow part below
    async with open_bot(settings) as (assistant, state):
        handler = AsyncSocketModeHandler(slack_app(slack, assistant, state), app_token)
        try:
            await _connect(handler)
            logger.info("slack bot connected (Socket Mode)")
            await sigterm()
        finally:
            await handler.close_async()  # no new events; answers keep their own Web API client
        await assistant.drain()


async def _connect(handler: AsyncSocketModeHandler) -> None:
    try:
        await handler.app.client.auth_test()  # a wrong bot token fails here, not at the first question
        await handler.connect_async()
    except SlackApiError as exc:
        raise ConfigError(
            f"Slack refused to connect ({exc.response.get('error')}): check SLACK_BOT_TOKEN, SLACK_APP_TOKEN and "
            "that the app has Socket Mode enabled"
        ) from exc
