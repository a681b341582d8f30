"""Telegram voice notes (a `voice` message, or an `audio` file) for bots.voicenotes: the size and length the
update declares, the download through the Bot API (getFile, then the file URL), and a reply by sendVoice."""

from __future__ import annotations

from telegram import Audio, InputFile, ReplyParameters, Voice
from telegram import Message as TgMessage

from bots.voicenotes import VoiceNote


def file_url(api_url: str) -> str:
    """The Bot API's file URL for its method URL: https://api.telegram.org/bot → https://api.telegram.org/file/bot
    (a self-hosted Bot API server, or a test's fake, serves files the same way)."""
    root, _, tail = api_url.rstrip("/").rpartition("/")
    return f"{root}/file/{tail}"


class TelegramVoiceNote(VoiceNote):
    def __init__(self, message: TgMessage, media: Voice | Audio):
        self.message = message
        self.media = media
        self.size = media.file_size
        # Through to_dict: PTB 22 warns on `.duration` while it moves from int to timedelta; the dict has seconds.
        self.seconds = float(media.to_dict().get("duration") or 0) or None
        self.filename = getattr(media, "file_name", None) or "voice.ogg"
        self.content_type = media.mime_type or ""

    async def download(self) -> bytes:
        file = await self.media.get_file()
        return bytes(await file.download_as_bytearray())

    async def send_voice(self, ogg_opus: bytes) -> None:
        await self.message.get_bot().send_voice(
            self.message.chat_id,
            InputFile(ogg_opus, filename="answer.ogg"),
            message_thread_id=self.message.message_thread_id if self.message.is_topic_message else None,
            reply_parameters=ReplyParameters(self.message.message_id, allow_sending_without_reply=True),
        )


def voice_of(message: TgMessage) -> TelegramVoiceNote | None:
    media = message.voice or message.audio
    return TelegramVoiceNote(message, media) if media is not None else None
