"""POST /teams/messages: the framework-free handler the web server mounts when TEAMS_APP_ID and
TEAMS_APP_PASSWORD are set. The bearer token is checked before the body is read (401), a body that is not an
activity is a 400; messages are answered after Teams got its 200, invokes (feedback) inside the request.
On shutdown the answers in flight get the grace period, then the HTTP client closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial

import httpx
from pydantic import ValidationError

from bots.base import Responder
from bots.settings import TeamsSettings, TeamsTable
from bots.teams.activities import Activity
from bots.teams.answer_ids import create_answer_ids
from bots.teams.auth import BotToken, InboundAuth, Unauthorized, token_url
from bots.teams.bot import TeamsBot
from bots.teams.connector import Connector
from bots.webhooks import WebhookHandler, WebhookReply, refuse, unreadable
from core.answer.assistant import Assistant
from core.errors import ConfigError
from core.shared_state import SharedState

logger = logging.getLogger(__name__)

MESSAGES_PATH = "/teams/messages"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class TeamsWebhook:
    path = MESSAGES_PATH
    max_body_bytes: int | None = 256 * 1024  # an activity with a long message, entities and channelData

    def __init__(self, teams: TeamsSettings):
        if not teams.app_id or teams.app_password is None:
            raise ConfigError('TEAMS_APP_ID and TEAMS_APP_PASSWORD are both needed: see README "Chat bots › Teams"')
        self.teams = teams
        self.app_id = teams.app_id

    @asynccontextmanager
    async def open(self, assistant: Assistant, state: SharedState) -> AsyncIterator[WebhookHandler]:
        teams = self.teams
        assert teams.app_password is not None  # checked in __init__
        responder = Responder(assistant, state, platform="teams", default_bot=teams.bot, table=TeamsTable)
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            token = BotToken(
                http,
                token_url=token_url(teams.login_url, teams.tenant_id),
                app_id=self.app_id,
                password=teams.app_password.get_secret_value(),
            )
            answers = create_answer_ids(state)
            bot = TeamsBot(responder, Connector(http, token), answers, native=teams.streaming == "native")
            auth = InboundAuth(http, openid_url=teams.openid_url, app_id=self.app_id)
            yield partial(self.handle, auth, bot)
            # Answers run after Teams got its 200, outside any request the server waits for.
            await assistant.drain()
            tasks = list(bot.tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def handle(self, auth: InboundAuth, bot: TeamsBot, body: bytes, headers: Mapping[str, str]) -> WebhookReply:
        try:
            verified = await auth.verify(headers)
        except Unauthorized as exc:
            return refuse("teams", 401, str(exc))
        try:
            activity = Activity.model_validate(json.loads(body))
        except (ValidationError, ValueError, TypeError) as exc:
            return unreadable("teams", exc)
        try:
            verified.check(service_url=activity.service_url, channel_id=activity.channel_id)
        except Unauthorized as exc:
            return refuse("teams", 401, str(exc))
        if activity.type == "invoke":
            status, content = await bot.invoke(activity)
            return WebhookReply.json(status, content)
        if activity.type == "message":
            await bot.message(activity)
        elif activity.type == "conversationUpdate":
            await bot.joined(activity)
        return WebhookReply.json(200, {})
