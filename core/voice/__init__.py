"""Speech in and out for every surface: `Voice` (core.voice.service) checks the limits and converts the audio,
behind two small protocols (core.voice.base) with an OpenAI-compatible, an offline Whisper and an espeak-ng
implementation. Surfaces reach it through the Assistant (`transcribe`, `speak`, `voice`)."""

from core.voice.base import Speaker, Speech, Transcriber, VoiceInfo
from core.voice.service import Voice, open_voice

__all__ = ["Speaker", "Speech", "Transcriber", "Voice", "VoiceInfo", "open_voice"]
