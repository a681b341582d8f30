"""The web server with voice, for the widget's voice tests (API and browser): a bots file with a voice bot
(`docs`) and one without (`quiet`), speech-to-text pointed at the fake OpenAI audio server, espeak-ng reading."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.config import Settings
from tests.conftest import WIDGET_KB, web_settings
from tests.fakes.openai_audio_server import FakeOpenAIAudio
from tests.fakes.openai_server import FakeOpenAI
from tests.servers import RunningServer, run_server

MAX_SECONDS = 8
TTS_MAX_CHARS = 300


def voice_bots(tmp: Path, origin: str) -> Path:
    path = tmp / "voice-bots.toml"
    path.write_text(
        f'[bots.docs]\nkb = "{WIDGET_KB}"\n[bots.docs.widget]\nallowed_origins = ["{origin}"]\nvoice = true\n'
        f'[bots.quiet]\nkb = "{WIDGET_KB}"\n[bots.quiet.widget]\nallowed_origins = ["{origin}"]\n'
    )
    return path


def spoken_wav(text: str) -> bytes:
    return subprocess.run(["espeak-ng", "--stdout", text], capture_output=True, check=True, timeout=30).stdout


def recording(seconds: float, codec: str = "libopus", fmt: str = "webm") -> bytes:
    """Speech as a browser's MediaRecorder sends it (WebM/Opus), padded to `seconds`."""
    command = ["ffmpeg", "-v", "error", "-i", "-", "-af", "apad", "-t", str(seconds), "-c:a", codec, "-f", fmt, "-"]
    wav = spoken_wav("How do I reset my password?")
    return subprocess.run(command, input=wav, capture_output=True, check=True, timeout=30).stdout


@contextmanager
def voice_server(
    settings: Settings, fake_llm: FakeOpenAI, origin: str, tmp: Path, audio_api: FakeOpenAIAudio, **extra: Any
) -> Iterator[RunningServer]:
    configured = web_settings(
        settings, fake_llm, origin, tmp, bots_file=voice_bots(tmp, origin), stt_base_url=audio_api.v1,
        voice_max_mb=1.0, voice_max_seconds=MAX_SECONDS, tts_max_chars=TTS_MAX_CHARS, **extra,
    )  # fmt: skip
    with run_server(configured) as running:
        yield running
