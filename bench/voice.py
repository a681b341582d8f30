"""Transcription time of a 10-second voice note, through each speech-to-text path the kit has.

    python -m bench.voice [--runs 5]

The note: espeak-ng reading a support question, padded/cut to exactly 10.0 s and encoded as OGG/Opus (what
Telegram and WhatsApp send). Paths, each through `core.voice.Voice.transcribe` (size check, ffprobe, ffmpeg
decode, then the service):
- the fake OpenAI-compatible server on loopback (tests/fakes/openai_audio_server.py): the kit's own overhead plus
  one multipart upload, with a server that answers at once;
- the offline Whisper base model (the `voice` extra, faster-whisper int8 on the CPU): first call (joins the model
  parts into the data directory and loads the model), then warm calls.
Also: espeak-ng reading a 300-character answer aloud.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from core.config import Settings
from core.voice import open_voice, whisper
from core.voice.audio import decode
from tests.fakes.openai_audio_server import FakeOpenAIAudio

QUESTION = (
    "Hello. I am trying to reset my password for the admin console, but the link in the email has expired. "
    "Can you tell me how to get a new link, and how long it stays valid?"
)
ANSWER = (
    "Open the admin console's sign-in page and choose Forgot password. A new link is sent to your e-mail address "
    "at once; it stays valid for thirty minutes and can be used only once. If no e-mail arrives, check the spam "
    "folder, then ask an administrator to reset the account from Settings, Users."
)


def ten_second_note() -> bytes:
    wav = subprocess.run(["espeak-ng", "--stdout", QUESTION], capture_output=True, check=True, timeout=60).stdout
    command = ["ffmpeg", "-v", "error", "-i", "-", "-af", "apad", "-t", "10", "-ac", "1", "-c:a", "libopus",
               "-b:a", "32k", "-f", "ogg", "-"]  # fmt: skip
    return subprocess.run(command, input=wav, capture_output=True, check=True, timeout=60).stdout


async def timed(call: Callable[[], Awaitable[Any]], runs: int) -> tuple[list[float], Any]:
    seconds, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = await call()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def row(path: str, seconds: list[float], note: str) -> str:
    p50 = statistics.median(seconds)
    return f"| {path} | {len(seconds)} | {p50 * 1000:.0f} ms | {max(seconds) * 1000:.0f} ms | {note} |"


async def main(runs: int) -> None:
    note = ten_second_note()
    seconds, _ = await timed(lambda: decode(note, max_seconds=120, timeout=60), runs)
    rows = [row("ffprobe + ffmpeg decode only (every path)", seconds, "the limits' check")]
    fake = FakeOpenAIAudio()
    fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        remote = Settings(_env_file=None, data_dir=data, stt_base_url=fake.v1)  # type: ignore[call-arg]
        async with open_voice(remote) as voice:
            await voice.transcribe(note, filename="voice.oga")  # warm-up: the client's connection
            seconds, _ = await timed(lambda: voice.transcribe(note, filename="voice.oga"), runs)
            rows.append(row("fake OpenAI-compatible server (loopback)", seconds, f"{len(note)} bytes uploaded"))
        fake.stop()
        if whisper.available():
            async with open_voice(Settings(_env_file=None, data_dir=data)) as voice:  # type: ignore[call-arg]
                first, _ = await timed(lambda: voice.transcribe(note, filename="voice.oga"), 1)
                rows.append(row("offline Whisper base, first call", first, "joins the model, loads it"))
                seconds, text = await timed(lambda: voice.transcribe(note, filename="voice.oga"), runs)
                rows.append(row("offline Whisper base, warm", seconds, f"“{text[:60]}…”"))
                spoken, speech = await timed(lambda: voice.speak(ANSWER), runs)
                rows.append(row(f"espeak-ng, {len(ANSWER)} characters aloud", spoken, f"{len(speech.audio)} bytes WAV"))
        else:
            rows.append("| offline Whisper base | — | — | — | not installed (switchboard[voice]) |")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; 10.0 s OGG/Opus note\n")
    print("| path | runs | p50 | max | note |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args().runs))
