"""`Voice`: the limits every surface gets (VOICE_MAX_MB, VOICE_MAX_SECONDS, TTS_MAX_CHARS), the conversion a
transcriber needs, and which services this process uses. Chosen once from the settings by `open_voice`."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core.config import Settings
from core.errors import AudioTooLarge, TextTooLong, VoiceNotConfigured
from core.voice import audio, whisper
from core.voice.base import Speaker, Speech, Transcriber, VoiceInfo
from core.voice.espeak import EspeakSpeaker
from core.voice.remote import RemoteSpeaker, RemoteTranscriber, extension

logger = logging.getLogger(__name__)

STT_OFF = "speech-to-text is not configured (set STT_BASE_URL, or install the offline model: switchboard[voice])"
TTS_OFF = "text-to-speech is not configured (set TTS_BASE_URL, or install espeak-ng)"


class Voice:
    def __init__(self, *, settings: Settings, transcriber: Transcriber | None, speaker: Speaker | None):
        self._settings = settings
        self._transcriber = transcriber
        self._speaker = speaker

    @property
    def info(self) -> VoiceInfo:
        s = self._settings
        return VoiceInfo(
            stt=self._transcriber.name if self._transcriber else None,
            tts=self._speaker.name if self._speaker else None,
            max_mb=s.voice_max_mb,
            max_seconds=s.voice_max_seconds,
            max_chars=s.tts_max_chars,
        )

    async def transcribe(self, data: bytes, *, filename: str = "audio", content_type: str = "") -> str:
        """The words of a recording. AudioTooLarge, NotAudio, AudioTooLong for unusable input; VoiceNotConfigured
        without a speech-to-text service; VoiceError when the service fails."""
        if self._transcriber is None:
            raise VoiceNotConfigured(STT_OFF)
        limit = self._settings.voice_max_mb
        if len(data) > limit * 1024 * 1024:
            raise AudioTooLarge(f"the recording is {len(data) / 1048576:.1f} MB; the limit is {limit:g} MB")
        timeout = self._settings.voice_timeout
        decoded = await audio.decode(data, max_seconds=self._settings.voice_max_seconds, timeout=timeout)
        if decoded.container in self._transcriber.formats:  # as recorded: smaller than WAV, nothing re-encoded
            stem = filename.rsplit(".", 1)[0] or "audio"
            return await self._transcriber.transcribe(
                data, filename=f"{stem}.{extension(decoded.container)}", content_type=content_type
            )
        return await self._transcriber.transcribe(decoded.wav(), filename="audio.wav", content_type="audio/wav")

    async def speak(self, text: str, *, voice_note: bool = False) -> Speech:
        """`text` read aloud (TextTooLong over TTS_MAX_CHARS; VoiceError when the service fails). `voice_note`:
        as OGG/Opus, what chat apps play as a voice message (Telegram's sendVoice, WhatsApp audio)."""
        if self._speaker is None:
            raise VoiceNotConfigured(TTS_OFF)
        limit = self._settings.tts_max_chars
        if len(text) > limit:
            raise TextTooLong(f"the text is {len(text)} characters; at most {limit} can be read aloud")
        if not text.strip():
            raise TextTooLong("there is no text to read aloud")
        speech = await self._speaker.speak(text)
        if not voice_note:
            return speech
        ogg = await audio.to_ogg_opus(speech.audio, timeout=self._settings.voice_timeout)
        return Speech(audio=ogg, content_type="audio/ogg")


@asynccontextmanager
async def open_voice(settings: Settings) -> AsyncIterator[Voice]:
    """The configured services: an STT_BASE_URL endpoint, else the offline Whisper if installed, else none; a
    TTS_BASE_URL endpoint, else espeak-ng if installed. No I/O here: the offline model loads on first use."""
    s, key = settings, (lambda secret: secret.get_secret_value() if secret else None)
    transcriber: Transcriber | None = None
    if s.stt_base_url:
        transcriber = RemoteTranscriber(
            base_url=s.stt_base_url, api_key=key(s.stt_api_key), model=s.stt_model, timeout=s.voice_timeout
        )
    elif whisper.available():
        transcriber = whisper.LocalWhisper(models_dir=s.data_dir / "models", timeout=s.voice_timeout)
    speaker: Speaker | None = None
    if s.tts_base_url:
        speaker = RemoteSpeaker(
            base_url=s.tts_base_url, api_key=key(s.tts_api_key), model=s.tts_model, voice=s.tts_voice,
            timeout=s.voice_timeout,
        )  # fmt: skip
    elif shutil.which("espeak-ng"):
        speaker = EspeakSpeaker(voice=s.tts_espeak_voice, timeout=s.voice_timeout)
    try:
        yield Voice(settings=settings, transcriber=transcriber, speaker=speaker)
    finally:
        for service in (transcriber, speaker):
            if isinstance(service, RemoteTranscriber | RemoteSpeaker):
                await service.aclose()
