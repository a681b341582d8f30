"""The speech protocols and their value types: what a transcriber or a speaker must offer, nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, kw_only=True)
class Speech:
    """Synthesised audio, ready to send: its bytes and their MIME type."""

    audio: bytes
    content_type: str


@dataclass(frozen=True, kw_only=True)
class VoiceInfo:
    """What this process can do with speech: the service behind each direction, None where it is off, and the
    limits (so a surface can refuse a recording before it downloads it, and cut a text to what can be read)."""

    stt: str | None
    tts: str | None
    max_mb: float  # VOICE_MAX_MB
    max_seconds: float  # VOICE_MAX_SECONDS
    max_chars: int  # TTS_MAX_CHARS


class Transcriber(Protocol):
    # Containers (FFmpeg format names) it reads as they are; anything else is handed to it as 16 kHz mono WAV.
    formats: frozenset[str]

    @property
    def name(self) -> str: ...

    async def transcribe(self, audio: bytes, *, filename: str, content_type: str) -> str: ...


class Speaker(Protocol):
    @property
    def name(self) -> str: ...

    async def speak(self, text: str) -> Speech: ...
