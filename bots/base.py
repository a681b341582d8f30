"""What every chat platform shares: a `Channel` to post and edit messages, and `relay()`, which turns the
core's event stream into a reply that grows in place.

Streaming into chat apps means post a placeholder, then edit it on a timer: the next edit only after the
previous one finished, none when nothing changed, and one final edit with the whole answer and its sources
(vercel/chat's fallbackStream does the same). An answer longer than one message continues in new messages.
A platform with a streaming API of its own (Slack) hands relay() another `Stream` strategy instead; relay
falls back to post-then-edit when that one cannot start.
The adapters (slack/, telegram.py, discord.py) only translate: platform event → `Message`, and `Channel`
calls → platform API calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from bots.dedup import create_deduplicator
from bots.render import Dialect, split
from bots.settings import BotTable
from core import shutdown
from core.answer.assistant import Assistant, open_assistant
from core.answer.citations import final_markdown
from core.answer.collect import collect
from core.answer.log import Rating
from core.answer.profiles import load_tables
from core.config import Settings
from core.errors import AnswerFailed, ConfigError
from core.shared_state import SharedState, open_redis
from core.types import Done, Event, Message

logger = logging.getLogger(__name__)

APOLOGY = "Sorry, something went wrong while answering. Please try again in a moment."
INTERRUPTED = f"_{shutdown.INTERRUPTED}_"
THANKS = "Thanks for the feedback!"
THINKING = "_Thinking…_"
CURSOR = " ▍"


class Channel(ABC):
    """Where one reply goes: a chat, a thread, a DM. Message ids are whatever the platform returns."""

    dialect: Dialect
    limit: int  # characters in one message, after rendering
    edit_interval: float  # seconds between edits of a streaming message

    @abstractmethod
    async def post(self, text: str, *, answer_id: str | None = None) -> str:
        """Send a new rendered message; with `answer_id`, with feedback buttons for that answer."""

    @abstractmethod
    async def edit(self, message_id: str, text: str, *, answer_id: str | None = None) -> None:
        """Replace a message's rendered text; with `answer_id`, add feedback buttons."""

    async def typing(self) -> None:
        """Show "typing…" where the platform has it; nothing otherwise."""
        return None


class Reply:
    """The messages of one reply and what each one shows; with `replacing`, an existing message becomes its
    first part."""

    def __init__(self, channel: Channel, replacing: str | None = None):
        self.channel = channel
        self.ids: list[str] = [replacing] if replacing else []
        self.shown: list[str] = [""] if replacing else []

    async def show(self, markdown: str, *, answer_id: str | None = None) -> None:
        parts = split(markdown, self.channel.dialect, self.channel.limit) or ["…"]
        # Parts only ever grow in number while an answer streams; pad just in case a re-parse merges two.
        parts += ["…"] * (len(self.ids) - len(parts))
        for i, part in enumerate(parts):
            feedback = answer_id if i == len(parts) - 1 else None
            if i >= len(self.ids):
                self.ids.append(await self.channel.post(part, answer_id=feedback))
                self.shown.append(part)
            elif part != self.shown[i] or feedback:
                await self.channel.edit(self.ids[i], part, answer_id=feedback)
                self.shown[i] = part


@dataclass
class Followed:
    """What one answer's events came to."""

    text: str = ""  # the Markdown streamed so far
    done: Done | None = None
    failure: str | None = None  # the core's reason for not answering
    cancelled: asyncio.CancelledError | None = None  # shutdown's grace period ran out mid-answer

    @property
    def reason(self) -> str:
        """Why there is no whole answer, fit for a user: cut off by a shutdown, the core's reason, or an apology."""
        return INTERRUPTED if self.cancelled is not None else self.failure or APOLOGY


async def follow(
    events: AsyncIterator[Event], where: str, update: Callable[[str], Awaitable[None]], interval: float
) -> Followed:
    """Read one answer's events while a background task calls `update(text so far)`: the next call only after
    the previous one finished and `interval` seconds passed, none when nothing changed. Returns when the events
    end and an update in flight has finished, so what the caller shows next is never overwritten."""
    result = Followed()
    changed, stop = asyncio.Event(), asyncio.Event()

    async def updater() -> None:
        shown = ""
        while True:
            await changed.wait()
            changed.clear()
            if stop.is_set():
                return
            if result.text != shown:
                shown = result.text
                try:
                    await update(shown)
                except Exception:  # a failed preview is not worth ending the answer for
                    logger.warning("a streaming update on %s failed", where, exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    def grow(text: str) -> None:
        result.text += text
        changed.set()

    task = asyncio.create_task(updater())
    try:
        result.done = await collect(events, grow)
    except AnswerFailed as failed:
        result.failure = str(failed)
    except asyncio.CancelledError as exc:  # the caller still gets to say so, not leave a stuck preview
        result.cancelled = exc
    except Exception:
        logger.exception("answering failed on %s", where)
    finally:
        stop.set()
        changed.set()
        await task
    return result


class Stream(ABC):
    """How one answer is shown while it is written: relay() reads the events and drives it."""

    interval: float  # seconds between updates

    @abstractmethod
    async def start(self) -> bool:
        """Open the reply before the first event; False when this way cannot show the answer (logged here)."""

    @abstractmethod
    async def update(self, text: str) -> None:
        """Show the Markdown written so far."""

    @abstractmethod
    async def finish(self, result: Followed) -> None:
        """Show the whole answer with its sources, or why there is none; never raises."""


class PostThenEdit(Stream):
    """Every platform's way: a placeholder, edits on the channel's timer, one final edit with the whole answer
    and its sources."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.interval = channel.edit_interval
        self.reply = Reply(channel)

    async def start(self) -> bool:
        try:
            await self.reply.show(THINKING)
        except Exception:
            logger.exception("could not post the placeholder to %s", self.channel.dialect.name)
            return False
        return True

    async def update(self, text: str) -> None:
        await self.reply.show(text + CURSOR)

    async def finish(self, result: Followed) -> None:
        try:
            await self.reply.show(ending(result), answer_id=result.done.answer_id if result.done else None)
        except Exception:
            logger.exception("could not deliver the final answer to %s", self.channel.dialect.name)


def ending(result: Followed) -> str:
    """What a reply finally shows: the answer with its sources, what was written before shutdown cut it off,
    the core's reason for not answering, or an apology."""
    if result.cancelled is not None:  # what was written stays, marked as cut off
        return f"{result.text}\n\n{result.reason}" if result.text else result.reason
    return final_markdown(result.done) if result.done else result.reason


async def relay(events: AsyncIterator[Event], channel: Channel, streaming: Stream | None = None) -> Done | None:
    """Stream one answer into `channel`: through `streaming`, a platform's own streaming API, when given and it
    starts, else post-then-edit. Returns the `Done` event (None when the answer failed). Never raises for a
    failed answer: the user gets the core's reason or a short apology instead of silence."""
    with contextlib.suppress(Exception):
        await channel.typing()
    stream = streaming
    if stream is None or not await stream.start():
        stream = PostThenEdit(channel)
        if not await stream.start():
            return None
    result = await follow(events, channel.dialect.name, stream.update, stream.interval)
    await stream.finish(result)
    if result.cancelled is not None:
        raise result.cancelled
    return result.done


RESET_PHRASES = frozenset({"reset", "start over", "new conversation", "forget"})


# What a reset does: the conversation's memory is cleared, so later questions are not read against it. Its
# answers stay in the answer log (the operator's record; erasure is forget-user / the widget's new conversation).
RESET_DONE = "Starting a new conversation: earlier messages here are no longer used as context."


def is_reset(text: str) -> bool:
    return text.strip().strip(".!").lower() in RESET_PHRASES


def feedback_value(rating: Rating, answer_id: str) -> str:
    """What a feedback button carries back (platform limits: Telegram's callback_data is 64 bytes)."""
    return f"{rating}:{answer_id}"


def parse_feedback(value: str) -> tuple[Rating, str] | None:
    rating, _, answer_id = value.partition(":")
    if rating not in ("up", "down") or not answer_id:
        return None
    return cast(Rating, rating), answer_id


@asynccontextmanager
async def open_bot(settings: Settings) -> AsyncIterator[tuple[Assistant, SharedState]]:
    """A bot process's assistant and its shared state, on one Redis client (`switchboard bot PLATFORM`)."""
    async with open_redis(settings) as redis, open_assistant(settings, redis=redis) as assistant:
        yield assistant, SharedState(settings.data_dir, redis)


Table = TypeVar("Table", bound=BotTable)


class Responder(Generic[Table]):
    """The part of every adapter that is not about its platform: which bot answers where, redelivery
    de-duplication, answering into a Channel, reset, feedback. `table`: the platform's model of a bot's
    `[bots.NAME.<platform>]` table, with `defaults` for keys a table leaves out."""

    def __init__(
        self,
        assistant: Assistant,
        state: SharedState,
        *,
        platform: str,
        default_bot: str,
        table: type[Table],
        **defaults: object,
    ) -> None:
        # Every bot's table, validated at start-up (core.answer.profiles.load_tables).
        self.tables = load_tables(assistant.profiles, platform, table, **defaults)
        if default_bot not in assistant.profiles:
            known = ", ".join(sorted(assistant.profiles))
            raise ConfigError(f"{platform.upper()}_BOT names an unknown bot {default_bot!r} (known: {known})")
        self.assistant = assistant
        self.dedup = create_deduplicator(state)
        self.platform = platform
        self.default_bot = default_bot

    def bot_for(self, scopes: Sequence[tuple[str, str]]) -> str:
        """The bot mapped to the most specific scope, e.g. [("channels", "C1"), ("teams", "T1")], from
        `[bots.NAME.<platform>]` tables in the bots file; else the platform's default bot."""
        for key, value in scopes:
            for name, table in self.tables.items():
                if value in table.scope(key):
                    return name
        return self.default_bot

    def welcome(self, bot: str) -> str:
        return self.assistant.profiles[bot].welcome

    async def first(self, event_key: str) -> bool:
        """False when this event was already handled (a redelivery): then do nothing."""
        return await self.dedup.first(f"{self.platform}:{event_key}")

    async def answer(
        self,
        channel: Channel,
        *,
        text: str,
        conversation_id: str,
        bot: str,
        user_id: str | None = None,
        streaming: Stream | None = None,
    ) -> Done | None:
        """Answer into `channel`, through `streaming` when the platform streams natively (see relay)."""
        message = Message(text=text, channel=self.platform, conversation_id=conversation_id, bot=bot, user_id=user_id)
        with self.assistant.in_flight.track():  # until the final edit, not just the end of the answer
            return await relay(self.assistant.answer(message), channel, streaming)

    async def reset(self, conversation_id: str) -> None:
        await self.assistant.reset(self.platform, conversation_id)

    async def engage(self, conversation_id: str) -> None:
        """Note a conversation the bot joined (a thread it was mentioned in), so follow-ups need no mention."""
        await self.assistant.engage(self.platform, conversation_id)

    async def engaged(self, conversation_id: str) -> bool:
        return await self.assistant.engaged(self.platform, conversation_id)

    async def feedback(self, value: str) -> bool:
        """Store a button's rating with its answer; False for a malformed or unknown answer id."""
        parsed = parse_feedback(value)
        return parsed is not None and await self.assistant.rate(parsed[1], parsed[0])
