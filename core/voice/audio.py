"""Audio inspection and conversion with ffprobe/ffmpeg (Debian packages) as subprocesses, each run bounded in time.
Decoding everything to 16 kHz mono PCM is how the length is measured: browser recordings (WebM from MediaRecorder)
carry no duration in their header, so ffprobe alone cannot enforce VOICE_MAX_SECONDS."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

from core.errors import AudioTooLong, NotAudio, VoiceError

SAMPLE_RATE = 16_000  # what speech models are trained on; 16-bit mono PCM is 32,000 bytes a second
_BYTES_PER_SECOND = SAMPLE_RATE * 2


@dataclass(frozen=True, kw_only=True)
class Decoded:
    container: str  # ffprobe's first format name: ogg, webm (Matroska), wav, mp3, mov (mp4/m4a), …
    seconds: float
    pcm: bytes  # 16 kHz mono signed 16-bit little-endian

    def wav(self) -> bytes:
        out = io.BytesIO()
        with wave.open(out, "wb") as file:
            file.setnchannels(1)
            file.setsampwidth(2)
            file.setframerate(SAMPLE_RATE)
            file.writeframes(self.pcm)
        return out.getvalue()


async def run(args: list[str], *, stdin: bytes = b"", timeout: float) -> tuple[int, bytes, bytes]:
    """One tool run: (exit code, stdout, stderr). Killed, and a VoiceError, when it outlives `timeout`."""
    if shutil.which(args[0]) is None:
        raise VoiceError(f"{args[0]} is not installed (apt install {_PACKAGES.get(args[0], args[0])})")
    process = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise VoiceError(f"{args[0]} took longer than {timeout:g} s") from None
    return process.returncode or 0, out, err


_PACKAGES = {"ffmpeg": "ffmpeg", "ffprobe": "ffmpeg", "espeak-ng": "espeak-ng"}


async def decode(audio: bytes, *, max_seconds: float, timeout: float) -> Decoded:
    """Check that `audio` is a recording no longer than `max_seconds` and decode it (NotAudio, AudioTooLong)."""
    # A file, not a pipe: MP4/M4A keep their index at the end, which ffprobe cannot seek to in a pipe.
    with tempfile.TemporaryDirectory(prefix="switchboard-voice-") as tmp:
        path = Path(tmp) / "input"
        await asyncio.to_thread(path.write_bytes, audio)
        container, declared = await _probe(path, timeout)
        if declared is not None and declared > max_seconds:
            raise AudioTooLong(f"the recording lasts {declared:.0f} s; the limit is {max_seconds:g} s")
        # One second past the limit is enough to know it is too long, whatever the header said.
        code, pcm, _ = await run(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-t", f"{max_seconds + 1:g}", "-vn", "-ac", "1",
             "-ar", str(SAMPLE_RATE), "-f", "s16le", "pipe:1"],
            timeout=timeout,
        )  # fmt: skip
    if code != 0 or not pcm:
        raise NotAudio("the upload is not audio that can be decoded")
    seconds = len(pcm) / _BYTES_PER_SECOND
    if seconds > max_seconds:
        raise AudioTooLong(f"the recording lasts more than {max_seconds:g} s, the limit")
    return Decoded(container=container, seconds=seconds, pcm=pcm)


async def _probe(path: Path, timeout: float) -> tuple[str, float | None]:
    """The container's name and the duration its header declares (None when it declares none)."""
    code, out, _ = await run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        timeout=timeout,
    )
    info = json.loads(out or b"{}") if code == 0 else {}
    if not any(s.get("codec_type") == "audio" for s in info.get("streams", [])):
        raise NotAudio("the upload is not audio (no audio stream found)")
    fmt = info.get("format", {})
    try:
        duration: float | None = float(fmt["duration"])
    except (KeyError, ValueError):
        duration = None
    return str(fmt.get("format_name", "")).split(",")[0], duration


async def to_ogg_opus(audio: bytes, *, timeout: float) -> bytes:
    """Any audio → OGG/Opus, what chat apps play as a voice note (Telegram's sendVoice, WhatsApp's audio)."""
    code, out, err = await run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", "pipe:0", "-vn", "-ac", "1", "-c:a", "libopus", "-b:a", "32k",
         "-f", "ogg", "pipe:1"],
        stdin=audio, timeout=timeout,
    )  # fmt: skip
    if code != 0 or not out:
        raise VoiceError(f"ffmpeg could not encode OGG/Opus: {err.decode(errors='replace').strip()[:200]}")
    return out
