"""GET and POST /whatsapp/webhook on the web server: Meta's verification handshake, then the signed deliveries.

A delivery is answered 200 at once and its messages handled afterwards, in tasks of their own (Meta redelivers
what is not acknowledged within seconds, and an answer takes longer). On shutdown the answers in flight get
the grace period to finish, like every other surface's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from functools import partial

from pydantic import SecretStr

from bots.base import Responder
from bots.settings import WhatsAppSettings, WhatsAppTable
from bots.webhooks import WebhookHandler, WebhookReply, refuse, same_secret, unreadable
from bots.whatsapp.bot import WhatsAppBot
from bots.whatsapp.graph import Graph
from bots.whatsapp.payload import Inbound, parse, unsigned
from core.answer.assistant import Assistant
from core.errors import ConfigError
from core.shared_state import SharedState

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/whatsapp/webhook"


def _required(value: SecretStr | str | None, variable: str) -> str:
    """The setting's value (the settings turn an empty variable into None)."""
    if value is None:
        raise ConfigError(f'{variable} is required for WhatsApp (see README "WhatsApp")')
    return value.get_secret_value() if isinstance(value, SecretStr) else value


class WhatsAppWebhook:
    """The Cloud API's webhook: GET answers Meta's verification request (hub.verify_token), POST takes
    deliveries signed with the app secret (401 before anything is parsed; a signed body of another shape 400)."""

    path = WEBHOOK_PATH
    max_body_bytes: int | None = None

    def __init__(self, whatsapp: WhatsAppSettings):
        self.whatsapp = whatsapp
        self.token = _required(whatsapp.access_token, "WHATSAPP_ACCESS_TOKEN")
        self.app_secret = _required(whatsapp.app_secret, "WHATSAPP_APP_SECRET")
        self.verify_token = _required(whatsapp.verify_token, "WHATSAPP_VERIFY_TOKEN")
        self.phone_number_id = _required(whatsapp.phone_number_id, "WHATSAPP_PHONE_NUMBER_ID")

    def verify(self, query: Mapping[str, str]) -> WebhookReply:
        """Meta's subscription check: echo hub.challenge when hub.verify_token is ours."""
        if query.get("hub.mode") != "subscribe" or not same_secret(query.get("hub.verify_token"), self.verify_token):
            return refuse("whatsapp", 403, "hub.mode is not subscribe or hub.verify_token is wrong")
        return WebhookReply(status=200, body=query.get("hub.challenge", "").encode(), content_type="text/plain")

    @asynccontextmanager
    async def open(self, assistant: Assistant, state: SharedState) -> AsyncIterator[WebhookHandler]:
        responder = Responder(assistant, state, platform="whatsapp", default_bot=self.whatsapp.bot, table=WhatsAppTable)
        graph = Graph.open(self.whatsapp.api_url, self.whatsapp.api_version, self.token)
        template = (self.whatsapp.template, self.whatsapp.template_language) if self.whatsapp.template else None
        bot = WhatsAppBot(responder, graph, self.phone_number_id, template)
        tasks: set[asyncio.Task[None]] = set()
        try:
            yield partial(self.handle, partial(self._answer, assistant, bot), tasks)
            # Messages are answered after Meta got its 200, outside any request the server waits for: each
            # task counts as in flight from its start, so none is cut off between its checks and its answer.
            await assistant.drain()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await graph.aclose()

    async def handle(
        self,
        answer: Callable[[Inbound], Coroutine[None, None, None]],
        tasks: set[asyncio.Task[None]],
        body: bytes,
        headers: Mapping[str, str],
    ) -> WebhookReply:
        reason = unsigned(self.app_secret, headers, body)
        if reason is not None:
            return refuse("whatsapp", 401, reason)
        try:
            messages = parse(body)
        except ValueError as exc:  # bad JSON, or pydantic's ValidationError
            return unreadable("whatsapp", exc)
        for message in messages:
            task = asyncio.create_task(answer(message))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return WebhookReply.json(200, {"ok": True})

    @staticmethod
    async def _answer(assistant: Assistant, bot: WhatsAppBot, message: Inbound) -> None:
        with assistant.in_flight.track():
            try:
                await bot.handle(message)
            except Exception:  # one message's failure (the Cloud API refusing a reply) must not end the others
                logger.exception("whatsapp: handling message %s failed", message.message_id)
