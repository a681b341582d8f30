"""Slack (slack-bolt): Socket Mode (`switchboard bot slack`) or the HTTP Events API on the web server
(POST /slack/events on `switchboard serve`), chosen by SLACK_MODE. Both run the same bolt app.

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

Streaming (SLACK_STREAMING): "native" (the default) uses Slack's streaming API in the thread:
chat.startStream, chat.appendStream with the Markdown written since the last append (at most one call per
APPEND_INTERVAL), then chat.stopStream, whose blocks put the sources, the context line and 👍/👎 under the
streamed answer (the stream is append-only: the edit path's final replace has no equivalent). An answer longer
than STREAM_LIMIT continues in another streamed message; a stream that breaks midway is finished with
chat.update. "edit" is post-then-edit (bots.base.relay): chat.update at most every EDIT_INTERVAL seconds,
sources and buttons in the final edit. Edit is also what ephemeral /ask answers get (they can be neither
streamed nor edited: relay collects them and the response_url gets the result), and what every answer of the
process gets once Slack has refused chat.startStream to the app (REFUSALS, e.g. unknown_method, or
missing_scope where Slack wants the "Agents & AI Apps" feature's assistant:write): logged once, and the
refused answer itself is given the edit way.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any, Required

from annotated_types import MinLen
from pydantic import SecretStr, TypeAdapter
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncBoltRequest, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from bots.base import (
    APOLOGY,
    INTERRUPTED,
    THANKS,
    THINKING,
    Channel,
    Reply,
    Responder,
    feedback_value,
    follow,
    is_reset,
    relay,
)
from bots.render import SLACK, final_markdown, render, sources_markdown, split
from bots.webhooks import UNREADABLE, WebhookHandler, WebhookReply, refuse, same_secret, unreadable
from core.answer.assistant import Assistant, open_assistant
from core.answer.log import Rating
from core.config import Settings
from core.errors import ConfigError
from core.shutdown import sigterm
from core.types import Done, Event

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
MAX_REQUEST_AGE = 5 * 60  # seconds: Slack's advice, so a captured request cannot be replayed later
# chat.update is rate-limited per workspace (Tier 3, ~50 a minute): one edit per 1.5 s per answer leaves
# room for a few answers at once; a 429 beyond that waits for Retry-After.
EDIT_INTERVAL = 1.5
SECTION_LIMIT = 3000  # characters of mrkdwn in one section block, the longest part of an answer
# chat.appendStream is Tier 4 (~100 calls a minute per workspace): one append a second per answer, each with
# all the Markdown written since the last, leaves room for a few answers at once.
APPEND_INTERVAL = 1.0
# Slack takes at most 12,000 characters of Markdown per streaming call, and a streamed message is kept under
# that too: a longer answer continues in a new streamed message. The margin closes a code block cut there.
STREAM_LIMIT = 11_990
# chat.startStream errors meaning that this app may not stream at all, rather than not in this thread.
REFUSALS = frozenset(
    {
        "unknown_method",
        "missing_scope",
        "not_allowed_token_type",
        "access_denied",
        "method_deprecated",
        "deprecated_endpoint",
        "enterprise_is_restricted",
    }
)
FENCE = "```"
FEEDBACK_ACTION = re.compile(r"^feedback_(up|down)$")
RESET_DONE = "Starting over: I have forgotten this conversation."
ASK_USAGE = "Usage: `/ask QUESTION`, or `/ask reset` to start over."
UNKNOWN_ANSWER = "Sorry, I could not find that answer any more."


def workspace(context: AsyncBoltContext) -> str:
    """The team an event comes from. An org-wide (Enterprise Grid) install's events name no team in their
    authorizations, so bolt's context has none: the organisation stands in, as in bolt's own say_stream."""
    return context.team_id or context.enterprise_id or ""


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


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def feedback_blocks(answer_id: str, footer: str) -> list[dict[str, Any]]:
    """The end of every answer: a context line naming the bot and its KB, then 👍/👎."""
    return [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]},
        {"type": "actions", "elements": [_button("up", "👍", answer_id), _button("down", "👎", answer_id)]},
    ]


def answer_blocks(text: str, answer_id: str | None, footer: str) -> list[dict[str, Any]] | None:
    """Block Kit for the last part of an answer: the text, a context line, 👍/👎. None for plain messages."""
    return [_section(text), *feedback_blocks(answer_id, footer)] if answer_id else None


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


def _in_code_block(markdown: str) -> bool:
    """Whether `markdown` stops inside a ``` code block (the fence models write)."""
    return sum(line.lstrip().startswith(FENCE) for line in markdown.split("\n")) % 2 == 1


class NativeStreaming:
    """Whether answers use Slack's streaming API: SLACK_STREAMING=native, until Slack refuses it to the app."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def refuse(self, error: str) -> None:
        if self.enabled:
            logger.warning("Slack refused to stream answers (%s): using post-then-edit from now on", error)
        self.enabled = False


class _Stream:
    """One answer streamed into a thread, in as many streamed messages as its length needs."""

    def __init__(self, thread: StreamedThread):
        self.thread = thread
        self.ts = ""  # the message streaming now
        self.shown = ""  # its Markdown
        self.head = ""  # what it starts with that is not the answer's (a reopened code block)
        self.begin = 0  # where in the answer it starts
        self.sent = 0  # characters of the answer streamed so far

    async def start(self, head: str = "") -> None:
        t = self.thread
        response = await t.client.chat_startStream(
            channel=t.channel, thread_ts=t.thread_ts, recipient_team_id=t.team, recipient_user_id=t.user
        )
        self.ts, self.shown, self.head, self.begin = str(response["ts"]), "", head, self.sent
        if head:
            await self._append(head)

    async def _append(self, markdown: str) -> None:
        await self.thread.client.chat_appendStream(channel=self.thread.channel, ts=self.ts, markdown_text=markdown)
        self.shown += markdown

    async def send(self, answer: str) -> None:
        """Stream what `answer` (the whole text so far) has beyond what was streamed already."""
        while self.sent < len(answer):
            rest, room = answer[self.sent :], STREAM_LIMIT - len(self.shown)
            piece = rest[:room]
            if len(rest) > room:  # the message is full: end it at a line break where there is one
                piece = piece[: piece.rfind("\n") + 1] or piece
            if piece:
                await self._append(piece)
                self.sent += len(piece)
            if self.sent < len(answer):
                await self._continue()

    async def _continue(self) -> None:
        """End the full message, closing a code block cut at its end, and go on in a new one."""
        reopen = _in_code_block(self.shown)
        if reopen:
            await self._append(FENCE if self.shown.endswith("\n") else f"\n{FENCE}")
        await self.stop(None)
        await self.start(f"{FENCE}\n" if reopen else "")

    async def stop(self, blocks: list[dict[str, Any]] | None) -> None:
        await self.thread.client.chat_stopStream(channel=self.thread.channel, ts=self.ts, blocks=blocks)


class StreamedThread(SlackThread):
    """A reply in one thread through Slack's streaming API; post-then-edit when Slack will not stream."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str,
        footer: str,
        team: str,
        user: str,
        native: NativeStreaming,
    ):
        super().__init__(client, channel=channel, thread_ts=thread_ts, footer=footer)
        self.team = team  # the recipient, which chat.startStream requires
        self.user = user
        self.native = native

    async def stream(self, events: AsyncIterator[Event]) -> Done | None:
        if not self.native.enabled:  # refused since this reply was set up
            return await relay(events, self)
        stream = _Stream(self)
        try:
            await stream.start()
        except Exception as exc:  # before any event was read: the edit path can still give the whole answer
            error = str(exc.response.get("error")) if isinstance(exc, SlackApiError) else repr(exc)
            if error in REFUSALS:
                self.native.refuse(error)
            else:
                logger.warning("could not stream in %s (%s): using post-then-edit", self.channel, error)
            return await relay(events, self)

        broken = False

        async def append(answer: str) -> None:
            nonlocal broken
            if not broken:  # after a failed append only the final send below tries again (then chat.update)
                try:
                    await stream.send(answer)
                except Exception:
                    broken = True
                    raise

        result = await follow(events, "slack", append, APPEND_INTERVAL)
        answer, done, cancelled = result.text, result.done, result.cancelled
        failure = INTERRUPTED if cancelled is not None else result.failure or APOLOGY
        if done is None:  # the stream cannot take back what it showed: the reason goes under it
            answer = f"{answer}\n\n{failure}" if answer.strip() else failure
        try:
            await stream.send(answer)
            await stream.stop(self.closing_blocks(done))
        except Exception:
            logger.warning("streaming in %s broke off: finishing with chat.update", self.channel, exc_info=True)
            await self.recover(stream, answer, done)
        if cancelled is not None:
            raise cancelled
        return done

    def closing_blocks(self, done: Done | None) -> list[dict[str, Any]] | None:
        """What chat.stopStream puts under the streamed answer: what the edit path's final message adds to the
        answer, i.e. its sources, then the context line and 👍/👎."""
        if done is None:
            return None
        blocks = [_section(part) for part in split(sources_markdown(done), SLACK, SECTION_LIMIT)]
        if done.answer_id:
            blocks += feedback_blocks(done.answer_id, self.footer)
        return blocks or None

    async def recover(self, stream: _Stream, answer: str, done: Done | None) -> None:
        """Replace the message whose stream broke with the rest of the answer, as the edit path shows it."""
        rest = stream.head + answer[stream.begin :]
        try:
            await Reply(self, replacing=stream.ts).show(
                final_markdown(done, rest) if done else rest, answer_id=done.answer_id if done else None
            )
        except Exception:
            logger.exception("could not deliver the final answer to slack")


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
            if not await self.responder.assistant.answers.engaged("slack", conversation_id(team, channel, thread)):
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
            await self.responder.assistant.answers.engage("slack", conversation)
        except Exception:
            logger.warning("could not note %s as a conversation the bot is in", conversation, exc_info=True)
        footer = self.footer(bot)
        target = SlackThread(client, channel=channel, thread_ts=thread, footer=footer)
        if self.native.enabled and team and user:
            target = StreamedThread(
                client, channel=channel, thread_ts=thread, footer=footer, team=team, user=user, native=self.native
            )
        await self.respond(target, text, conversation, bot, user)

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
        await self.answer_in_thread(
            client, text, team=team, channel=channel, thread=str(asked["ts"]), bot=bot, user=user
        )


def _required(secret: SecretStr | None, name: str, prefix: str = "") -> str:
    value = secret.get_secret_value() if secret is not None else ""
    if not value:
        raise ConfigError(f'{name} is not set: see README "Chat bots › Slack"')
    if not value.startswith(prefix):
        raise ConfigError(f"{name} must start with {prefix} (Slack app settings › OAuth / Basic Information)")
    return value


def slack_app(settings: Settings, assistant: Assistant) -> AsyncApp:
    """The bolt app with every listener. It verifies nothing itself: in HTTP mode `SlackWebhook` checks each
    request before bolt parses it; Socket Mode has no requests to verify (its websocket was opened with the
    app-level token)."""
    client = AsyncWebClient(
        token=_required(settings.slack_bot_token, "SLACK_BOT_TOKEN", "xoxb-"),
        base_url=settings.slack_api_url,
        retry_handlers=[AsyncConnectionErrorRetryHandler(), AsyncRateLimitErrorRetryHandler(max_retry_count=3)],
    )
    app = AsyncApp(
        client=client,
        signing_secret="",
        request_verification_enabled=False,
        logger=logger,
    )
    responder = Responder(assistant, platform="slack", default_bot=settings.slack_bot)
    SlackBot(
        responder, ask_ephemeral=settings.slack_ask_ephemeral, native=settings.slack_streaming == "native"
    ).register(app)
    return app


async def run(settings: Settings) -> None:
    """Socket Mode until SIGTERM (then disconnect and let the answers in flight finish) or Ctrl-C; slack_sdk
    reconnects a dropped websocket by itself."""
    if settings.slack_mode == "http":
        raise ConfigError(f"SLACK_MODE=http: Slack's requests are served by `switchboard serve` at {EVENTS_PATH}")
    app_token = _required(settings.slack_app_token, "SLACK_APP_TOKEN", "xapp-")
    _required(settings.slack_bot_token, "SLACK_BOT_TOKEN", "xoxb-")  # before the slow part below
    async with open_assistant(settings) as assistant:
        handler = AsyncSocketModeHandler(slack_app(settings, assistant), app_token)
        try:
            await _connect(handler)
            logger.info("slack bot connected (Socket Mode)")
            await sigterm()
        finally:
            await handler.close_async()  # no new events; answers keep their own Web API client
        await assistant.in_flight.drain(settings.shutdown_grace_seconds)


async def _connect(handler: AsyncSocketModeHandler) -> None:
    try:
        await handler.app.client.auth_test()  # a wrong bot token fails here, not at the first question
        await handler.connect_async()
    except SlackApiError as exc:
        raise ConfigError(
            f"Slack refused to connect ({exc.response.get('error')}): check SLACK_BOT_TOKEN, SLACK_APP_TOKEN and "
            "that the app has Socket Mode enabled"
        ) from exc


_Object = dict[str, Any]
_Ref = _Object | str | None  # a team, user, channel or enterprise: the object, or its id


class _Event(TypedDict, total=False):
    type: Required[str]
    user: _Ref
    channel: _Ref
    team: _Ref
    message: _Object
    previous_message: _Object
    item: _Object


class _Action(TypedDict, total=False):
    action_id: Required[str]
    block_id: str


class _Payload(TypedDict, total=False):
    """What bolt's context extractors and listener matchers read of a payload without checking its type:
    signed but otherwise malformed bodies are refused instead of crashing bolt (a 500 and a traceback)."""

    event: _Event
    authorizations: list[_Object]
    actions: Annotated[list[_Action], MinLen(1)]
    team: _Ref
    user: _Ref
    channel: _Ref
    enterprise: _Ref
    container: _Object
    message: _Object
    view: _Object


_PAYLOAD = TypeAdapter(_Payload)


def _unsigned(verifier: SignatureVerifier, headers: Mapping[str, str], body: bytes) -> str | None:
    """Why a request is not from Slack, or None when its signature holds. Only the raw bytes and headers are
    read: nothing is parsed before the request is known to be Slack's. (slack_sdk's own is_valid raises on a
    non-numeric timestamp or a non-ASCII signature instead of saying no.)"""
    timestamp = headers.get("x-slack-request-timestamp", "")
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return "missing or malformed X-Slack-Request-Timestamp"
    if age > MAX_REQUEST_AGE:
        return "X-Slack-Request-Timestamp is too old (a replayed request?)"
    try:
        expected = verifier.generate_signature(timestamp=timestamp, body=body.decode())
    except UnicodeDecodeError:
        return "the body is not UTF-8, so it cannot be Slack's"
    if expected is None or not same_secret(headers.get("x-slack-signature"), expected):
        return "missing or wrong X-Slack-Signature"
    return None


class SlackWebhook:
    """POST /slack/events on the web server: events, interactivity (the feedback buttons) and /ask. The
    signature is checked before anything reads the body (401), a signed body bolt cannot read gets a 400;
    bolt answers Slack at once (the ack) and its listeners work afterwards, in tasks of their own."""

    path = EVENTS_PATH
    # A button click carries the whole answer message twice (text and blocks), URL-encoded: ~30 KB in a
    # non-Latin script.
    max_body_bytes: int | None = 64 * 1024

    def __init__(self, settings: Settings):
        _required(settings.slack_bot_token, "SLACK_BOT_TOKEN", "xoxb-")
        self.settings = settings
        self.verifier = SignatureVerifier(_required(settings.slack_signing_secret, "SLACK_SIGNING_SECRET"))

    @asynccontextmanager
    async def open(self, assistant: Assistant) -> AsyncIterator[WebhookHandler]:
        yield partial(self.handle, slack_app(self.settings, assistant))

    async def handle(self, app: AsyncApp, body: bytes, headers: Mapping[str, str]) -> WebhookReply:
        reason = _unsigned(self.verifier, headers, body)
        if reason is not None:
            return refuse("slack", 401, reason)
        try:
            request = AsyncBoltRequest(body=body.decode(), headers=dict(headers))
            _PAYLOAD.validate_python(request.body)
        except UNREADABLE as exc:  # a pydantic ValidationError is a ValueError
            return unreadable("slack", exc)
        response = await app.async_dispatch(request)
        # Without an OAuth flow bolt sets no cookies: its headers are all there is to pass on.
        extra = response.first_headers_without_set_cookie()
        content_type = extra.pop("content-type")
        return WebhookReply(
            status=response.status, body=response.body.encode(), content_type=content_type, headers=extra
        )
