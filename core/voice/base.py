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
    """What this process can do with speech: the service behind each direction, None where it is off."""

    stt: str | None
    tts: str | None


class Transcriber(Protocol):
    # Containers (ffprobe format names) it reads as they are; anything else is handed to it as 16 kHz mono WAV.
    formats: frozenset[str]

    @property
    def name(self) -> str: ...

    async def transcribe(self, audio: bytes, *, filename: str, content_type: str) -> str: ...


class Speaker(Protocol):
    @property
    def name(self) -> str: ...

    async def speak(self, text: str) -> Speech: ...
