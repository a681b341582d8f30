"""Slack (slack-bolt): Socket Mode (`switchboard bot slack`) or the HTTP Events API on the web server
(POST /slack/events on `switchboard serve`), chosen by SLACK_MODE. Both run the same bolt app.

What it answers: an @mention in a channel, every direct message, and any later message in a channel thread
where it has already answered (no new mention needed). Replies always go in the message's thread. A channel
thread is one conversation (team:channel:thread); a direct message channel is one conversation as a whole
(team:channel), so a DM reads like a chat and "reset" starts it over. `/ask QUESTION` posts the question and
answers in its thread, or, with SLACK_ASK_EPHEMERAL, answers only the asker.

Reliability: bolt acknowledges every event before a listener runs, so Slack's 3 seconds are always met.
Redeliveries (X-Slack-Retry-Num) and the same message arriving as two events (a mention in a followed thread
is both `app_mention` and `message`) are answered once: the de-duplicator is keyed by the message itself
(team:channel:ts) and claimed before answering, so a retry that arrives while the first answer still runs is
dropped too, on every replica that shares the store. Web API calls are retried on 429 after Retry-After and
on dropped connections (slack_sdk's retry handlers); 5xx are not retried, since a post may have gone through.

Streaming is post-then-edit (bots.base.relay) with chat.update at most every EDIT_INTERVAL seconds. Slack's
native streaming (chat.startStream/appendStream/stopStream, present in slack_sdk 3.48) is not used: it only
works for apps with the "Agents & AI Apps" feature (assistant:write) and needs recipient team/user ids in
channels; it is append-only standard Markdown, so relay's final replace (answer + sources + buttons, long
answers split at the block limit) and the shared mrkdwn renderer's link policy do not apply; and ephemeral
/ask answers cannot stream at all. Post-then-edit works in every workspace with the scopes in the manifest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import SecretStr
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bots.base import APOLOGY, THINKING, Channel, Responder, feedback_value, is_reset
from bots.render import SLACK, render
from core.answers import Rating
from core.config import Settings
from core.dedup import create_deduplicator
from core.errors import ConfigError
from core.rag import Assistant, open_assistant

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
# chat.update is rate-limited per workspace (Tier 3, ~50 a minute): one edit per 1.5 s per answer leaves
# room for a few answers at once; a 429 beyond that waits for Retry-After.
EDIT_INTERVAL = 1.5
SECTION_LIMIT = 3000  # characters of mrkdwn in one section block, the longest part of an answer
FEEDBACK_ACTION = re.compile(r"^feedback_(up|down)$")
RESET_DONE = "Starting over: I have forgotten this conversation."
ASK_USAGE = "Usage: `/ask QUESTION`, or `/ask reset` to start over."
THANKS = "Thanks for the feedback!"
UNKNOWN_ANSWER = "Sorry, I could not find that answer any more."


def conversation_id(team: str, channel: str, thread: str) -> str:
    """A direct message channel (its id starts with D) is one conversation; in channels each thread is."""
    return f"{team}:{channel}" if channel.startswith("D") else f"{team}:{channel}:{thread}"


def _button(rating: Rating, label: str, answer_id: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": f"feedback_{rating}",
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "value": feedback_value(rating, answer_id),
    }


def answer_blocks(text: str, answer_id: str | None, footer: str) -> list[dict[str, Any]] | None:
    """Block Kit for the last part of an answer: the text, a context line, 👍/👎. None for plain messages."""
    if answer_id is None:
        return None
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]},
        {"type": "actions", "elements": [_button("up", "👍", answer_id), _button("down", "👎", answer_id)]},
    ]


class SlackThread(Channel):
    """A reply in one thread, through the Web API."""

    dialect = SLACK
    limit = SECTION_LIMIT
    edit_interval = EDIT_INTERVAL

    def __init__(self, client: AsyncWebClient, *, channel: str, thread_ts: str, footer: str):
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.footer = footer

    async def post(self, text: str, *, answer_id: str | None = None) -> str:
        response = await self.client.chat_postMessage(
            channel=self.channel,
            thread_ts=self.thread_ts,
            text=text,
            blocks=answer_blocks(text, answer_id, self.footer),
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(response["ts"])

    async def edit(self, message_id: str, text: str, *, answer_id: str | None = None) -> None:
        await self.client.chat_update(
            channel=self.channel, ts=message_id, text=text, blocks=answer_blocks(text, answer_id, self.footer)
        )


class PrivateReply(Channel):
    """An ephemeral /ask answer. Ephemeral messages cannot be edited through the Web API, so relay() streams
    into memory (previews are never shown) and the finished parts are sent once, via the response_url."""

    dialect = SLACK
    limit = SECTION_LIMIT
    edit_interval = 3600.0

    def __init__(self) -> None:
        self.parts: list[tuple[str, str | None]] = []

    async def post(self, text: str, *, answer_id: str | None = None) -> str:
        self.parts.append((text, answer_id))
        return str(len(self.parts) - 1)

    async def edit(self, message_id: str, text: str, *, answer_id: str | None = None) -> None:
        self.parts[int(message_id)] = (text, answer_id)


def _plain(text: str, bot_user: str | None) -> str:
    """Slack's message text → the question: without the bot's mention, with its three escapes undone."""
    if bot_user:
        text = re.sub(rf"<@{re.escape(bot_user)}(?:\|[^>]*)?>", "", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


class SlackBot:
    """The listeners: Slack payloads in, Responder calls out."""

    def __init__(self, responder: Responder, *, ask_ephemeral: bool):
        self.responder = responder
        self.ask_ephemeral = ask_ephemeral

    def register(self, app: AsyncApp) -> None:
        app.event("app_mention")(self.on_mention)
        app.event("message")(self.on_message)
        app.action(FEEDBACK_ACTION)(self.on_feedback)
        app.command("/ask")(self.on_ask)

    def footer(self, bot: str) -> str:
        profile = self.responder.assistant.profiles[bot]
        return f"Answered by {SLACK.escape(profile.persona)} from the _{SLACK.escape(profile.kb)}_ knowledge base"

    def bot_for(self, team: str, channel: str) -> str:
        return self.responder.bot_for([("channels", channel), ("teams", team)])

    async def on_mention(self, event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
        if event.get("bot_id"):  # other bots mentioning us: no bot-to-bot loops
            return
        await self.reply(client, context.team_id or "", event, _plain(event.get("text", ""), context.bot_user_id))

    async def on_message(self, event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
        # Subtypes are edits, deletions, joins, bot posts...; bolt already drops our own messages.
        if event.get("subtype") or event.get("bot_id"):
            return
        team, channel, text = context.team_id or "", event["channel"], event.get("text", "")
        if not channel.startswith("D"):
            thread = event.get("thread_ts")
            if not thread or f"<@{context.bot_user_id}" in text:  # not a thread reply, or app_mention's job
                return
            if not await self.responder.assistant.answers.conversation("slack", conversation_id(team, channel, thread)):
                return
        await self.reply(client, team, event, _plain(text, context.bot_user_id))

    async def reply(self, client: AsyncWebClient, team: str, event: dict[str, Any], text: str) -> None:
        channel, ts = event["channel"], event["ts"]
        if not await self.responder.first(f"{team}:{channel}:{ts}"):
            logger.info("slack message %s:%s already answered (a redelivery)", channel, ts)
            return
        thread = event.get("thread_ts") or ts
        bot = self.bot_for(team, channel)
        target = SlackThread(client, channel=channel, thread_ts=thread, footer=self.footer(bot))
        await self.respond(target, text, conversation_id(team, channel, thread), bot, event.get("user"))

    async def respond(self, target: Channel, text: str, conversation: str, bot: str, user: str | None) -> None:
        """Answer, start over or greet; an error becomes an apology in the thread, never silence."""
        try:
            if is_reset(text):
                await self.responder.reset(conversation)
                await target.post(RESET_DONE)
            elif not text:
                await target.post(render(self.responder.welcome(bot), SLACK))
            else:
                await self.responder.answer(target, text=text, conversation_id=conversation, bot=bot, user_id=user)
        except Exception:
            logger.exception("answering on slack failed (%s)", conversation)
            with contextlib.suppress(Exception):
                await target.post(APOLOGY)

    async def on_feedback(
        self, ack: AsyncAck, action: dict[str, Any], body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        await ack()
        stored = await self.responder.feedback(action.get("value", ""))
        container = body.get("container", {})
        await client.chat_postEphemeral(
            channel=container.get("channel_id") or body["channel"]["id"],
            user=body["user"]["id"],
            thread_ts=container.get("thread_ts"),
            text=THANKS if stored else UNKNOWN_ANSWER,
        )

    async def on_ask(
        self, ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        text = _plain(command.get("text", ""), None)
        team, channel, user = command["team_id"], command["channel_id"], command["user_id"]
        # A private /ask conversation is the asker's own in that channel; public ones are their threads.
        private = conversation_id(team, channel, user)
        if not text:
            await ack(ASK_USAGE)
            return
        if is_reset(text):
            await self.responder.reset(private)
            await ack(RESET_DONE)
            return
        bot = self.bot_for(team, channel)
        if self.ask_ephemeral:
            await ack(render(THINKING, SLACK))  # shown to the asker at once
            await self.ask_privately(respond, text, private, bot, user)
        else:
            await ack()
            await self.ask_publicly(client, respond, text, team=team, channel=channel, bot=bot, user=user)

    async def ask_privately(self, respond: AsyncRespond, text: str, conversation: str, bot: str, user: str) -> None:
        reply = PrivateReply()
        await self.respond(reply, text, conversation, bot, user)
        for part, answer_id in reply.parts:
            await respond(text=part, blocks=answer_blocks(part, answer_id, self.footer(bot)), response_type="ephemeral")

    async def ask_publicly(
        self, client: AsyncWebClient, respond: AsyncRespond, text: str, *, team: str, channel: str, bot: str, user: str
    ) -> None:
        """Post the question, then answer in its thread, where follow-ups need no mention."""
        try:
            asked = await client.chat_postMessage(channel=channel, text=f"<@{user}> asked: {SLACK.escape(text)}")
        except Exception:  # e.g. not_in_channel: a private channel the app was not invited to
            logger.exception("could not post /ask in %s", channel)
            await respond(text=APOLOGY, response_type="ephemeral")
            return
        thread = str(asked["ts"])
        target = SlackThread(client, channel=channel, thread_ts=thread, footer=self.footer(bot))
        await self.respond(target, text, conversation_id(team, channel, thread), bot, user)


def _required(secret: SecretStr | None, name: str, prefix: str = "") -> str:
    value = secret.get_secret_value() if secret is not None else ""
    if not value:
        raise ConfigError(f'{name} is not set: see README "Chat bots › Slack"')
    if not value.startswith(prefix):
        raise ConfigError(f"{name} must start with {prefix} (Slack app settings › OAuth / Basic Information)")
    return value


def slack_app(settings: Settings, assistant: Assistant) -> AsyncApp:
    """The bolt app with every listener. HTTP mode verifies Slack's signature; Socket Mode has no requests
    to verify (its websocket was opened with the app-level token)."""
    http = settings.slack_mode == "http"
    client = AsyncWebClient(
        token=_required(settings.slack_bot_token, "SLACK_BOT_TOKEN", "xoxb-"),
        base_url=settings.slack_api_url,
        retry_handlers=[AsyncConnectionErrorRetryHandler(), AsyncRateLimitErrorRetryHandler(max_retry_count=3)],
    )
    app = AsyncApp(
        client=client,
        signing_secret=_required(settings.slack_signing_secret, "SLACK_SIGNING_SECRET") if http else "",
        request_verification_enabled=http,
        logger=logger,
    )
    responder = Responder(assistant, create_deduplicator(settings), platform="slack", default_bot=settings.slack_bot)
    SlackBot(responder, ask_ephemeral=settings.slack_ask_ephemeral).register(app)
    return app


async def run(settings: Settings) -> None:
    """Socket Mode until cancelled (Ctrl-C); slack_sdk reconnects a dropped websocket by itself."""
    if settings.slack_mode == "http":
        raise ConfigError(f"SLACK_MODE=http: Slack's requests are served by `switchboard serve` at {EVENTS_PATH}")
    app_token = _required(settings.slack_app_token, "SLACK_APP_TOKEN", "xapp-")
    _required(settings.slack_bot_token, "SLACK_BOT_TOKEN", "xoxb-")  # before the slow part below
    async with open_assistant(settings) as assistant:
        handler = AsyncSocketModeHandler(slack_app(settings, assistant), app_token)
        try:
            await _connect(handler)
            logger.info("slack bot connected (Socket Mode)")
            await asyncio.Event().wait()
        finally:
            await handler.close_async()


async def _connect(handler: AsyncSocketModeHandler) -> None:
    try:
        await handler.app.client.auth_test()  # a wrong bot token fails here, not at the first question
        await handler.connect_async()
    except SlackApiError as exc:
        raise ConfigError(
            f"Slack refused to connect ({exc.response.get('error')}): check SLACK_BOT_TOKEN, SLACK_APP_TOKEN and "
            "that the app has Socket Mode enabled"
        ) from exc


def http_router(settings: Settings) -> APIRouter:
    """POST /slack/events on the web server: events, interactivity (the feedback buttons) and /ask, each
    checked against the signing secret (401 otherwise); bolt answers Slack at once and works afterwards."""
    _required(settings.slack_bot_token, "SLACK_BOT_TOKEN", "xoxb-")
    _required(settings.slack_signing_secret, "SLACK_SIGNING_SECRET")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.slack = AsyncSlackRequestHandler(slack_app(settings, app.state.switchboard.assistant))
        yield

    router = APIRouter(lifespan=lifespan, tags=["Chat bots"])

    @router.post(EVENTS_PATH, include_in_schema=False)
    async def events(request: Request) -> Response:
        handler: AsyncSlackRequestHandler = request.app.state.slack
        return await handler.handle(request)

    return router
