"""Speech services behind any OpenAI-compatible endpoint (OpenAI, Groq, speaches/faster-whisper-server, …),
called through the `openai` client: POST /v1/audio/transcriptions (multipart) and /v1/audio/speech."""

from __future__ import annotations

import logging

import openai

from core.errors import VoiceError
from core.voice.base import Speech

logger = logging.getLogger(__name__)

# OpenAI's documented input containers, by ffprobe's names (webm is "matroska", mp4/m4a "mov"); it reads the
# format from the file name's extension, so the name sent follows the container.
_EXTENSIONS = {"ogg": "ogg", "matroska": "webm", "wav": "wav", "mp3": "mp3", "flac": "flac", "mov": "m4a"}


def _client(base_url: str, api_key: str | None, timeout: float) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=api_key or "not-needed", timeout=openai.Timeout(timeout, connect=5.0), max_retries=1
    )


class RemoteTranscriber:
    formats = frozenset(_EXTENSIONS)

    def __init__(self, *, base_url: str, api_key: str | None, model: str, timeout: float):
        self._model = model
        self._client = _client(base_url, api_key, timeout)

    @property
    def name(self) -> str:
        return self._model

    async def transcribe(self, audio: bytes, *, filename: str, content_type: str) -> str:
        try:
            result = await self._client.audio.transcriptions.create(
                model=self._model, file=(filename, audio, content_type)
            )
        except openai.OpenAIError as exc:
            logger.warning("speech-to-text failed: %s", exc)
            raise VoiceError(f"the speech-to-text service failed: {type(exc).__name__}") from exc
        return result if isinstance(result, str) else str(getattr(result, "text", ""))

    async def aclose(self) -> None:
        await self._client.close()


def extension(container: str) -> str:
    """The file extension the endpoint expects for an ffprobe container name (wav for what it would not read)."""
    return _EXTENSIONS.get(container, "wav")


class RemoteSpeaker:
    def __init__(self, *, base_url: str, api_key: str | None, model: str, voice: str, timeout: float):
        self._model, self._voice = model, voice
        self._client = _client(base_url, api_key, timeout)

    @property
    def name(self) -> str:
        return f"{self._model} ({self._voice})"

    async def speak(self, text: str) -> Speech:
        try:
            response = await self._client.audio.speech.create(
                model=self._model, voice=self._voice, input=text, response_format="mp3"
            )
        except openai.OpenAIError as exc:
            logger.warning("text-to-speech failed: %s", exc)
            raise VoiceError(f"the text-to-speech service failed: {type(exc).__name__}") from exc
        if not response.content:
            raise VoiceError("the text-to-speech service returned no audio")
        return Speech(audio=response.content, content_type="audio/mpeg")

    async def aclose(self) -> None:
        await self._client.close()
