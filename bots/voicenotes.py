"""Voice notes in chat apps (Telegram, WhatsApp), platform-free: a note is checked against the limits before it
is downloaded (when the platform says its size or length), transcribed through the Assistant, its transcript
quoted back ("🎤 “…”") so the user sees what was understood, then answered like a typed question through the
Responder (citations, feedback, de-dup). A bot with `voice_reply = true` in its table also sends the answer as
a voice message (OGG/Opus, what both apps play as a voice note). Whatever goes wrong, the user gets a polite
reply: never silence, never a traceback."""

from __future__ import annotations

import contextlib
import logging
import re
from abc import ABC, abstractmethod

from bots.base import Channel, Reply, Responder, Stream
from core.answer.assistant import Assistant
from core.errors import AudioTooLarge, AudioTooLong, NotAudio, VoiceError, VoiceNotConfigured
from core.types import Done

logger = logging.getLogger(__name__)

NOT_CONFIGURED = "Sorry, I can't listen to voice notes here. Please type your question."
NOT_AUDIO = "Sorry, I couldn't play that recording. Please send a voice note or type your question."
NOTHING_HEARD = "Sorry, I couldn't make out any words in that voice note. Please try again or type your question."
FAILED = "Sorry, I couldn't transcribe that voice note just now. Please try again in a moment or type your question."


def too_long(seconds: float) -> str:
    return f"Sorry, that voice note is too long: I can listen to {seconds:g} seconds at most. Please keep it shorter."


def too_big(mb: float) -> str:
    return f"Sorry, that voice note is too big: I can take {mb:g} MB at most. Please keep it shorter."


def quote(transcript: str) -> str:
    """The reply that shows what was understood (Markdown, rendered in the platform's dialect)."""
    return f"🎤 “{transcript}”"


class VoiceNote(ABC):
    """One received voice note: what the platform says about it before download, and its two platform calls."""

    size: int | None = None  # bytes, when the platform says
    seconds: float | None = None  # length, when the platform says
    filename: str = "voice.ogg"
    content_type: str = ""

    async def describe(self) -> None:
        """Learn `size`/`seconds` before the download, where the platform says them only on request."""
        return None

    @abstractmethod
    async def download(self) -> bytes:
        """The recording's bytes, through the platform's API."""

    @abstractmethod
    async def send_voice(self, ogg_opus: bytes) -> None:
        """Send an OGG/Opus recording into the chat, as a voice message replying to the note."""


class VoiceNotes:
    """The checks, transcription and speech of voice notes, on the Assistant's voice services and limits."""

    def __init__(self, assistant: Assistant):
        self.assistant = assistant
        self.limits = assistant.voice

    async def refusal(self, note: VoiceNote) -> str | None:
        """Why a note is not worth downloading, as a reply to the user; None to go ahead."""
        if self.limits.stt is None:
            return NOT_CONFIGURED
        try:
            await note.describe()
        except Exception:  # the platform's refusal or a network drop: the user can send it again
            logger.warning("could not look up a voice note", exc_info=True)
            return FAILED
        limit_mb, limit_s = self.limits.max_mb, self.limits.max_seconds
        if note.size is not None and note.size > limit_mb * 1024 * 1024:
            return too_big(limit_mb)
        if note.seconds is not None and note.seconds > limit_s:
            return too_long(limit_s)
        return None

    async def hear(self, note: VoiceNote) -> tuple[str | None, str]:
        """(the transcript, its quote) or (None, why there is none, as a reply to the user)."""
        try:
            data = await note.download()
        except AudioTooLarge:  # the platform did not say the size: the download stopped at the limit
            return None, too_big(self.limits.max_mb)
        except Exception:  # the platform's refusal or a network drop: the user can send it again
            logger.warning("could not download a voice note", exc_info=True)
            return None, FAILED
        try:
            text = (
                await self.assistant.transcribe(data, filename=note.filename, content_type=note.content_type)
            ).strip()
        except VoiceNotConfigured:
            return None, NOT_CONFIGURED
        except AudioTooLarge:
            return None, too_big(self.limits.max_mb)
        except AudioTooLong:
            return None, too_long(self.limits.max_seconds)
        except NotAudio:
            return None, NOT_AUDIO
        except VoiceError as exc:  # the speech service failed or timed out (logged where it failed)
            logger.warning("could not transcribe a voice note: %s", exc)
            return None, FAILED
        except Exception:  # a bug or an unforeseen failure: the user still gets a reply, the log the traceback
            logger.warning("could not transcribe a voice note", exc_info=True)
            return None, FAILED
        return (text, quote(text)) if text else (None, NOTHING_HEARD)

    async def speech(self, done: Done) -> bytes | None:
        """The answer read aloud as OGG/Opus; None (logged) when text-to-speech is off or fails: the text
        answer has been sent, so a missing voice reply is not worth an apology."""
        if self.limits.tts is None:
            logger.info("voice_reply is on but text-to-speech is not configured: answered as text only")
            return None
        try:
            return (await self.assistant.speak(spoken(done.text, self.limits.max_chars), voice_note=True)).audio
        except VoiceError as exc:
            logger.warning("could not read an answer aloud: %s", exc)
            return None


_CITATION = re.compile(r"\s*\[\d+\]")
_MARKUP = re.compile(r"[*`#>~|]+|\[([^\]]*)\]\([^)]*\)")


def spoken(markdown: str, limit: int) -> str:
    """An answer as it should be read aloud: no citation markers, no Markdown marks (a link reads as its text),
    cut at the last sentence that fits in `limit` characters. Underscores (_italic_, SNAKE_CASE) read as spaces."""
    text = _MARKUP.sub(lambda m: m.group(1) or "", _CITATION.sub("", markdown)).replace("_", " ")
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    return cut[: end + 1] if end > 0 else cut.rsplit(" ", 1)[0]


async def answer_voice_note(
    responder: Responder,
    channel: Channel,
    note: VoiceNote,
    *,
    conversation_id: str,
    bot: str,
    user_id: str | None,
    voice_reply: bool,
    streaming: Stream | None = None,
) -> None:
    """The whole flow for one note that passed de-dup: check, download, transcribe, quote, answer, speak."""
    notes = VoiceNotes(responder.assistant)
    refusal = await notes.refusal(note)
    if refusal is not None:
        await Reply(channel).show(refusal)
        return
    with contextlib.suppress(Exception):  # transcription takes a few seconds: show that something is happening
        await channel.typing()
    transcript, reply = await notes.hear(note)
    await Reply(channel).show(reply)
    if transcript is None:
        return
    done = await responder.answer(
        channel, text=transcript, conversation_id=conversation_id, bot=bot, user_id=user_id, streaming=streaming
    )
    if voice_reply and done is not None:
        audio = await notes.speech(done)
        if audio is not None:
            try:
                await note.send_voice(audio)
            except Exception:  # the text answer is there; the voice one is a bonus
                logger.warning("could not send a voice reply", exc_info=True)
