"""Offline text-to-speech: Debian's espeak-ng as a subprocess (robotic, but always there and instant)."""

from __future__ import annotations

import io
import wave

from core.errors import VoiceError
from core.voice.audio import run
from core.voice.base import Speech


class EspeakSpeaker:
    def __init__(self, *, voice: str, timeout: float):
        self._voice, self._timeout = voice, timeout

    @property
    def name(self) -> str:
        return f"espeak-ng ({self._voice})"

    async def speak(self, text: str) -> Speech:
        # The text on stdin, never on the command line: it is a user's, and may start with "-".
        code, wav, err = await run(
            ["espeak-ng", "-v", self._voice, "--stdin", "--stdout"], stdin=text.encode(), timeout=self._timeout
        )
        if code != 0 or not wav.startswith(b"RIFF"):
            raise VoiceError(f"espeak-ng failed: {err.decode(errors='replace').strip()[:200] or 'no audio'}")
        return Speech(audio=_with_lengths(wav), content_type="audio/wav")


def _with_lengths(streamed: bytes) -> bytes:
    """espeak-ng writing to a pipe cannot go back to fill in the WAV header's lengths (it leaves 0x7fffffff):
    rewritten with the real ones, so players show the right duration and stop where the speech ends."""
    with wave.open(io.BytesIO(streamed)) as source:
        params, frames = source.getparams(), source.readframes(source.getnframes())
    out = io.BytesIO()
    with wave.open(out, "wb") as target:
        target.setparams(params)
        target.writeframes(frames)
    return out.getvalue()
