"""The Discord bot (`switchboard bot discord`): a thin adapter between discord.py and the shared `Responder`.

In: @mentions in server channels, every DM, follow-ups in threads the bot opened, `/ask` and `/reset`, and
clicks on 👍/👎. Out: a `Channel` that posts and edits Discord messages (or an interaction's responses), so
`relay()` streams the answer. Which bot answers where, and who may use it, comes from the bots file:

    [bots.docs.discord]
    guilds = [111111111111111111]            # answer as this bot in these servers
    channels = [222222222222222222]          # ... and channels (a thread follows its channel)
    allowed_channels = [222222222222222222]  # optional: only here
    allowed_roles = [333333333333333333]     # optional: only for members with one of these roles
    threads = true                           # optional: answer mentions in a new thread (else DISCORD_THREADS)

Each DM, thread and channel is one conversation. Redelivered events (replays after a gateway RESUME) are
dropped by message / interaction id. discord.py itself handles reconnects and rate-limit buckets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from abc import abstractmethod
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Self, TypeVar

import discord
from discord import app_commands
from discord.utils import MISSING
from pydantic import BeforeValidator, StringConstraints

from bots.base import (
    APOLOGY,
    RESET_DONE,
    THANKS,
    Channel,
    Responder,
    feedback_value,
    is_reset,
    open_bot,
    parse_feedback,
)
from bots.render import DISCORD, render
from bots.settings import BotTable, DiscordSettings
from core.answer.log import Rating
from core.config import Settings
from core.errors import ConfigError
from core.shutdown import until_sigterm

logger = logging.getLogger(__name__)

NOT_ALLOWED = "Sorry, I can't answer you here."
UNKNOWN_ANSWER = "Sorry, I can't find that answer any more."
_CHAT_TYPES = (discord.MessageType.default, discord.MessageType.reply)
_THREAD_NAME_CHARS = 90  # Discord allows 100

Snowflake = Annotated[str, BeforeValidator(str), StringConstraints(pattern=r"^[0-9]+$")]


class DiscordRules(BotTable):
    """A bot's `[bots.NAME.discord]` table. `guilds` and `channels` are read by `Responder.bot_for`; `threads`
    defaults to DISCORD_THREADS."""

    guilds: frozenset[Snowflake] = frozenset()
    channels: frozenset[Snowflake] = frozenset()
    allowed_channels: frozenset[Snowflake] = frozenset()
    allowed_roles: frozenset[Snowflake] = frozenset()
    threads: bool

    def admits(self, where: Where) -> bool:
        if not (self.allowed_channels or self.allowed_roles):
            return True
        if where.guild is None:
            return False  # a DM has no channel or roles to check against the allowlists
        in_channel = not self.allowed_channels or bool(self.allowed_channels.intersection(where.channels))
        return in_channel and (not self.allowed_roles or bool(self.allowed_roles & where.roles))


@dataclass(frozen=True, kw_only=True)
class Where:
    """Where a question was asked, in the terms of the bots file."""

    conversation: str  # the DM, thread or channel: each one conversation
    channels: tuple[str, ...]  # the channel, then a thread's parent channel
    guild: str | None
    roles: frozenset[str]

    @classmethod
    def of(cls, channel: object, channel_id: int, guild_id: int | None, user: discord.abc.User) -> Self:
        parent = channel.parent_id if isinstance(channel, discord.Thread) else None
        return cls(
            conversation=str(channel_id),
            channels=tuple(str(c) for c in (channel_id, parent) if c),
            guild=str(guild_id) if guild_id else None,
            roles=frozenset(str(r.id) for r in user.roles) if isinstance(user, discord.Member) else frozenset(),
        )

    def scopes(self) -> list[tuple[str, str]]:
        return [("channels", c) for c in self.channels] + ([("guilds", self.guild)] if self.guild else [])


# --- feedback buttons -------------------------------------------------------------------------------------


class FeedbackButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"fb:(?P<value>(?:up|down):[\w-]+)"
):
    """👍/👎 under an answer. The custom_id carries the rating and answer id, so a click is understood from
    the id alone: buttons keep working after a restart, with no view state kept per message."""

    def __init__(self, rating: Rating, answer_id: str):
        self.value = feedback_value(rating, answer_id)
        emoji = "👍" if rating == "up" else "👎"
        super().__init__(
            discord.ui.Button(emoji=emoji, style=discord.ButtonStyle.secondary, custom_id=f"fb:{self.value}")
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        parsed = parse_feedback(match["value"])
        assert parsed is not None  # the template only matches valid values
        return cls(*parsed)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        bot: DiscordBot = interaction.client
        stored = await bot.responder.feedback(self.value)
        await interaction.response.send_message(THANKS if stored else UNKNOWN_ANSWER, ephemeral=True)


def feedback_view(answer_id: str | None) -> discord.ui.View | None:
    if not answer_id:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(FeedbackButton("up", answer_id))
    view.add_item(FeedbackButton("down", answer_id))
    return view


# --- where replies go -------------------------------------------------------------------------------------


M = TypeVar("M", bound=discord.Message)


class _DiscordChannel(Channel, Generic[M]):
    """Every part of an answer is sent with link previews (embeds) suppressed: its sources are links."""

    dialect = DISCORD
    limit = 2000
    # Discord allows about 5 edits per 5 s per channel; discord.py waits out any 429 itself, and relay()
    # never starts an edit before the previous one returned, so a slow bucket just means fewer previews.
    edit_interval = 1.0

    def __init__(self) -> None:
        self._sent: dict[str, M] = {}

    @abstractmethod
    async def _send(self, text: str, view: discord.ui.View | None) -> M: ...

    @abstractmethod
    async def _edit(self, message: M, text: str, view: discord.ui.View | None) -> None: ...

    async def post(self, text: str, *, answer_id: str | None = None) -> str:
        message = await self._send(text, feedback_view(answer_id))
        self._sent[str(message.id)] = message
        return str(message.id)

    async def edit(self, message_id: str, text: str, *, answer_id: str | None = None) -> None:
        await self._edit(self._sent[message_id], text, feedback_view(answer_id))


class MessageChannel(_DiscordChannel[discord.Message]):
    """A reply in a channel, thread or DM; the first message replies to the question when given one."""

    def __init__(self, target: discord.abc.Messageable, reply_to: discord.Message | None = None):
        super().__init__()
        self.target = target
        # Still post the answer if the question is deleted meanwhile.
        self.reference = reply_to.to_reference(fail_if_not_exists=False) if reply_to else None

    async def _send(self, text: str, view: discord.ui.View | None) -> discord.Message:
        reference, self.reference = self.reference, None
        return await self.target.send(
            text,
            view=view or MISSING,
            reference=reference,  # type: ignore[arg-type]  # None, send()'s default, means "not a reply"
            suppress_embeds=True,
        )

    async def _edit(self, message: discord.Message, text: str, view: discord.ui.View | None) -> None:
        # discord.py sends the flags on every edit, cleared unless told: the link previews would come back.
        await message.edit(content=text, view=view, suppress=True)

    async def typing(self) -> None:
        await self.target.typing()


class InteractionChannel(_DiscordChannel[discord.WebhookMessage]):
    """A `/ask` reply, all in follow-up messages: after a deferred response the first one takes the place of
    "thinking…". (edit_original_response cannot suppress link previews; a follow-up can.)"""

    def __init__(self, interaction: discord.Interaction[Any]):
        super().__init__()
        self.interaction = interaction

    async def _send(self, text: str, view: discord.ui.View | None) -> discord.WebhookMessage:
        return await self.interaction.followup.send(text, view=view or MISSING, wait=True, suppress_embeds=True)

    async def _edit(self, message: discord.WebhookMessage, text: str, view: discord.ui.View | None) -> None:
        # Webhook edits send no flags, so the message keeps the ones it was sent with.
        await message.edit(content=text, view=view)


# --- the client -------------------------------------------------------------------------------------------


def intents(*, message_content: bool) -> discord.Intents:
    # guilds: channels, threads and the bot's own role; messages in servers and DMs. Message Content is
    # privileged and only needed to read follow-ups in the bot's threads: mentions and DMs carry their text
    # without it, and slash commands never need it.
    return discord.Intents(guilds=True, guild_messages=True, dm_messages=True, message_content=message_content)


class DiscordBot(discord.Client):
    def __init__(self, responder: Responder[DiscordRules], *, message_content: bool):
        # No answer may ping anyone: model output could contain @everyone or a user id.
        super().__init__(
            intents=intents(message_content=message_content), allowed_mentions=discord.AllowedMentions.none()
        )
        self.responder = responder
        self.rules = responder.tables
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(ask)
        self.tree.add_command(reset)
        self.tree.error(self._command_failed)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(FeedbackButton)
        await self.tree.sync()  # global commands; an unchanged set is a no-op for Discord

    async def on_ready(self) -> None:
        logger.info("Discord: logged in as %s, in %d servers", self.user, len(self.guilds))

    def _bot_here(self, where: Where) -> str | None:
        """The bot mapped to this place, or None when its allowlists leave this person or place out."""
        bot = self.responder.bot_for(where.scopes())
        return bot if self.rules[bot].admits(where) else None

    # --- messages ---

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.author.system or message.type not in _CHAT_TYPES:
            return
        question = self._question(message)
        if question is None or not await self.responder.first(f"message:{message.id}"):
            return
        try:
            await self._answer_message(message, question)
        except Exception:
            logger.exception("could not answer Discord message %s", message.id)
            with contextlib.suppress(discord.HTTPException):
                await message.channel.send(APOLOGY)

    def _question(self, message: discord.Message) -> str | None:
        """The question in a message meant for the bot: a DM, a mention, or anything in a thread it opened.
        None for every other message."""
        assert self.user is not None
        me = {self.user.id}
        if message.guild and message.guild.self_role:  # "@Bot" may arrive as the bot's managed role
            me.add(message.guild.self_role.id)
        mentioned = any(m.id in me for m in [*message.mentions, *message.role_mentions])
        channel = message.channel
        in_own_thread = isinstance(channel, discord.Thread) and channel.owner_id == self.user.id
        if not (mentioned or in_own_thread or message.guild is None):
            return None
        text = re.sub(rf"<@[!&]?(?:{'|'.join(map(str, me))})>", "", message.content).strip()
        if not text and in_own_thread and not mentioned:
            return None  # without the Message Content intent an unmentioned message arrives empty
        return text

    async def _answer_message(self, message: discord.Message, question: str) -> None:
        guild_id = message.guild.id if message.guild else None
        where = Where.of(message.channel, message.channel.id, guild_id, message.author)
        bot = self._bot_here(where)
        if bot is None:
            await message.reply(NOT_ALLOWED)
            return
        if not question:
            await message.reply(render(self.responder.welcome(bot), DISCORD))
            return
        if is_reset(question):
            await self.responder.reset(where.conversation)
            await message.reply(RESET_DONE)
            return
        channel = MessageChannel(message.channel, reply_to=message if message.guild else None)
        conversation = where.conversation
        if self.rules[bot].threads and isinstance(message.channel, discord.TextChannel):
            thread = await message.create_thread(name=_thread_name(question))
            channel, conversation = MessageChannel(thread), str(thread.id)
        await self.responder.answer(
            channel, text=question, conversation_id=conversation, bot=bot, user_id=str(message.author.id)
        )

    # --- slash commands ---

    async def _admit(self, interaction: discord.Interaction[Any]) -> tuple[str, Where] | None:
        """A command's bot and place; None for a redelivered interaction or one the allowlists refuse."""
        if interaction.channel_id is None or not await self.responder.first(f"interaction:{interaction.id}"):
            return None
        where = Where.of(interaction.channel, interaction.channel_id, interaction.guild_id, interaction.user)
        bot = self._bot_here(where)
        if bot is None:
            await interaction.response.send_message(NOT_ALLOWED, ephemeral=True)
            return None
        return bot, where

    async def ask_command(self, interaction: discord.Interaction[Any], question: str) -> None:
        admitted = await self._admit(interaction)
        if admitted is None:
            return
        bot, where = admitted
        # Discord wants a response within 3 s; answers take longer, so acknowledge first ("thinking…").
        await interaction.response.defer(thinking=True)
        await self.responder.answer(
            InteractionChannel(interaction),
            text=question,
            conversation_id=where.conversation,
            bot=bot,
            user_id=str(interaction.user.id),
        )

    async def reset_command(self, interaction: discord.Interaction[Any]) -> None:
        admitted = await self._admit(interaction)
        if admitted is None:
            return
        await self.responder.reset(admitted[1].conversation)
        await interaction.response.send_message(RESET_DONE, ephemeral=True)

    async def _command_failed(self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        logger.error("a Discord command failed", exc_info=error)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(APOLOGY, ephemeral=True)
            else:
                await interaction.response.send_message(APOLOGY, ephemeral=True)
        except discord.HTTPException:
            logger.warning("could not apologise for a failed command", exc_info=True)


def _thread_name(question: str) -> str:
    line = question.splitlines()[0]
    return line if len(line) <= _THREAD_NAME_CHARS else line[: _THREAD_NAME_CHARS - 1] + "…"


@app_commands.command(name="ask", description="Ask a question about the documentation.")
@app_commands.describe(question="What do you want to know?")
async def ask(interaction: discord.Interaction[DiscordBot], question: str) -> None:
    await interaction.client.ask_command(interaction, question)


@app_commands.command(name="reset", description="Forget this conversation and start over.")
async def reset(interaction: discord.Interaction[DiscordBot]) -> None:
    await interaction.client.reset_command(interaction)


# --- running ----------------------------------------------------------------------------------------------


async def run(settings: Settings, discord_settings: DiscordSettings) -> None:
    """Answer on Discord until SIGTERM (then let the answers in flight finish) or Ctrl-C."""
    if discord_settings.bot_token is None:
        raise ConfigError("DISCORD_BOT_TOKEN is not set: add your bot's token to .env (README: Chat bots › Discord)")
    token = discord_settings.bot_token.get_secret_value()
    async with open_bot(settings) as (assistant, state):
        responder = Responder(
            assistant,
            state,
            platform="discord",
            default_bot=discord_settings.bot,
            table=DiscordRules,
            threads=discord_settings.threads,
        )
        try:
            await _serve(DiscordBot(responder, message_content=True), token)
        except discord.PrivilegedIntentsRequired:
            logger.warning(
                "The Message Content intent is not enabled for this bot in the Discord Developer Portal: "
                "answering mentions, DMs and slash commands only (follow-ups in threads need a mention)"
            )
            await _serve(DiscordBot(responder, message_content=False), token)


async def _serve(client: DiscordBot, token: str) -> None:
    """Until SIGTERM, then leave the gateway (no new events) but keep the HTTP session open for the answers
    in flight; `async with client` closes it once they are done. discord.py's close() would do both at once."""
    try:
        async with client:
            await client.login(token)
            gateway = await until_sigterm(client.connect())
            if gateway is None:  # closed by itself (its errors, e.g. PrivilegedIntentsRequired, were raised)
                return
            gateway.cancel()
            await asyncio.wait({gateway})
            if client.ws is not None:
                await client.ws.close(code=1000)
            await client.responder.assistant.drain()
    except discord.LoginFailure:
        raise ConfigError("Discord refused DISCORD_BOT_TOKEN: copy the bot's token again (README: Chat bots)") from None
