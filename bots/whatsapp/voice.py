"""WhatsApp voice notes (`audio` messages) for bots.voicenotes: the size from GET /{media-id} before the download
(the webhook says neither size nor length), the download with the bearer token, and a reply as an uploaded
OGG/Opus recording sent as an `audio` message."""

from __future__ import annotations

from bots.voicenotes import VoiceNote
from bots.whatsapp.graph import Graph, Media
from bots.whatsapp.payload import Inbound


class WhatsAppVoiceNote(VoiceNote):
    def __init__(self, graph: Graph, message: Inbound, *, max_bytes: int):
        self.graph = graph
        self.message = message
        self.max_bytes = max_bytes  # VOICE_MAX_MB: the download stops there when the lookup said no size
        self.content_type = message.mime_type
        self._media: Media | None = None

    async def describe(self) -> None:
        self._media = await self.graph.media(self.message.media_id)
        self.size = self._media.size

    async def download(self) -> bytes:
        if self._media is None:
            await self.describe()
        assert self._media is not None
        return await self.graph.download(self._media, max_bytes=self.max_bytes)

    async def send_voice(self, ogg_opus: bytes) -> None:
        number, to = self.message.phone_number_id, self.message.sender
        media_id = await self.graph.upload(number, ogg_opus, "audio/ogg")
        await self.graph.send_audio(number, to, media_id, reply_to=self.message.message_id)
