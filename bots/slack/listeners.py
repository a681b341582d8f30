"""The Slack listeners: Slack payloads in, Responder calls out.

What it answers: an @mention in a channel, every direct message, and any later message in a channel thread
where it has answered or started answering (no new mention needed; noted in the answer log when the answer
starts, so every process sharing the data directory knows, even while that answer is still streaming).
Replies always go in the message's thread. A channel thread is one conversation (team:channel:thread); a
direct message channel is one conversation as a whole (team:channel), so a DM reads like a chat and "reset"
starts it over. `/ask QUESTION` posts the question and answers in its thread, or, with SLACK_ASK_EPHEMERAL,
answers only the asker.

Reliability: bolt acknowledges every event before a listener runs, so Slack's 3 seconds are always met.
Redeliveries (X-Slack-Retry-Num) and the same message arriving as two events (a mention in a followed thread
is both `app_mention` and `message`) are answered once: the de-duplicator is keyed by the message itself
(team:channel:ts) and claimed before answering, so a retry that arrives while the first answer still runs is
dropped too, on every replica that shares the store. Web API calls are retried on 429 after Retry-After and
on dropped connections (slack_sdk's retry handlers); 5xx are not retried, since a post may have gone through.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bots.base import APOLOGY, RESET_DONE, THANKS, THINKING, Channel, Responder, Stream, is_reset
from bots.render import SLACK, render
from bots.slack.blocks import answer_blocks
from bots.slack.streaming import NativeStream, NativeStreaming
from bots.slack.threads import PrivateReply, SlackThread

logger = logging.getLogger(__name__)

FEEDBACK_ACTION = re.compile(r"^feedback_(up|down)$")
ASK_USAGE = "Usage: `/ask QUESTION`, or `/ask reset` to start over."
UNKNOWN_ANSWER = "Sorry, I could not find that answer any more."


def workspace(context: AsyncBoltContext) -> str:
    """The team an event comes from. An org-wide (Enterprise Grid) install's events name no team in their
    authorizations, so bolt's context has none: the organisation stands in, as in bolt's own say_stream."""
    return context.team_id or context.enterprise_id or ""


def conversation_id(team: str, channel: str, thread: str) -> str:
    """A direct message channel (its id starts with D) is one conversation; in channels each thread is."""
    return f"{team}:{channel}" if channel.startswith("D") else f"{team}:{channel}:{thread}"


def _plain(text: str, bot_user: str | None) -> str:
    """Slack's message text → the question: without the bot's mention, with its three escapes undone."""
    if bot_user:
        text = re.sub(rf"<@{re.escape(bot_user)}(?:\|[^>]*)?>", "", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


class SlackBot:
    """The listeners: Slack payloads in, Responder calls out."""

    def __init__(self, responder: Responder, *, ask_ephemeral: bool, native: bool):
        self.responder = responder
        self.ask_ephemeral = ask_ephemeral
        self.native = NativeStreaming(native)  # one per process: a refusal holds for every later answer

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
        await self.reply(client, workspace(context), event, _plain(event.get("text", ""), context.bot_user_id))

    async def on_message(self, event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
        # Subtypes are edits, deletions, joins, bot posts...; bolt already drops our own messages.
        if event.get("subtype") or event.get("bot_id"):
            return
        team, channel, text = workspace(context), event["channel"], event.get("text", "")
        if not channel.startswith("D"):
            thread = event.get("thread_ts")
            if not thread or f"<@{context.bot_user_id}" in text:  # not a thread reply, or app_mention's job
                return
            if not await self.responder.engaged(conversation_id(team, channel, thread)):
                return
        await self.reply(client, team, event, _plain(text, context.bot_user_id))

    async def reply(self, client: AsyncWebClient, team: str, event: dict[str, Any], text: str) -> None:
        channel, ts = event["channel"], event["ts"]
        if not await self.responder.first(f"{team}:{channel}:{ts}"):
            logger.info("slack message %s:%s already answered (a redelivery)", channel, ts)
            return
        thread = event.get("thread_ts") or ts
        bot = self.bot_for(team, channel)
        await self.answer_in_thread(
            client, text, team=team, channel=channel, thread=thread, bot=bot, user=event.get("user")
        )

    async def answer_in_thread(
        self, client: AsyncWebClient, text: str, *, team: str, channel: str, thread: str, bot: str, user: str | None
    ) -> None:
        conversation = conversation_id(team, channel, thread)
        try:  # from now on follow-ups need no mention, even while this answer is still being written
            await self.responder.engage(conversation)
        except Exception:
            logger.warning("could not note %s as a conversation the bot is in", conversation, exc_info=True)
        target = SlackThread(client, channel=channel, thread_ts=thread, footer=self.footer(bot))
        streaming = None
        if self.native.enabled and team and user:
            streaming = NativeStream(target, team=team, user=user, native=self.native)
        await self.respond(target, text, conversation, bot, user, streaming)

    async def respond(
        self,
        target: Channel,
        text: str,
        conversation: str,
        bot: str,
        user: str | None,
        streaming: Stream | None = None,
    ) -> None:
        """Answer, start over or greet; an error becomes an apology in the thread, never silence."""
        try:
            if is_reset(text):
                await self.responder.reset(conversation)
                await target.post(RESET_DONE)
            elif not text:
                await target.post(render(self.responder.welcome(bot), SLACK))
            else:
                await self.responder.answer(
                    target, text=text, conversation_id=conversation, bot=bot, user_id=user, streaming=streaming
                )
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
        await self.answer_in_thread(
            client, text, team=team, channel=channel, thread=str(asked["ts"]), bot=bot, user=user
        )
