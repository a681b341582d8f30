"""Audio inspection and conversion for core.voice: PyAV (FFmpeg's libraries from its wheel) in a child process
(core/voice/transcode.py), each run bounded in time, so untrusted media never decodes inside the server. Decoding
everything to 16 kHz mono PCM is how the length is measured: browser recordings (WebM from MediaRecorder) carry
no duration in their header."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import shutil
import sys
import wave
from dataclasses import dataclass

from core.errors import AudioTooLong, NotAudio, VoiceError
from core.voice import transcode

SAMPLE_RATE = transcode.SAMPLE_RATE
_BYTES_PER_SECOND = SAMPLE_RATE * 2  # 16-bit mono PCM


@dataclass(frozen=True, kw_only=True)
class Decoded:
    container: str  # FFmpeg's first format name: ogg, matroska (WebM), wav, mp3, mov (mp4/m4a), …
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
        raise VoiceError(f"{args[0]} is not installed")
    process = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout)
    except TimeoutError:
        raise VoiceError(f"{args[0]} took longer than {timeout:g} s") from None
    finally:  # timed out, or the caller cancelled (shutdown, a cancelled bot task): the child goes too
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.shield(process.wait())
    return process.returncode or 0, out, err


async def decode(audio: bytes, *, max_seconds: float, timeout: float) -> Decoded:
    """Check that `audio` is a recording no longer than `max_seconds` and decode it (NotAudio, AudioTooLong)."""
    code, out, err = await _transcode(["decode", f"{max_seconds:g}"], audio, timeout)
    reason = err.decode(errors="replace").strip()
    if code == transcode.NOT_AUDIO:
        raise NotAudio(reason)
    if code == transcode.TOO_LONG:
        raise AudioTooLong(reason)
    if code != 0:
        raise VoiceError(f"audio decoding failed: {reason[-200:]}")
    container, _, pcm = out.partition(b"\n")
    seconds = len(pcm) / _BYTES_PER_SECOND
    if seconds > max_seconds:
        raise AudioTooLong(f"the recording lasts more than {max_seconds:g} s, the limit")
    return Decoded(container=container.decode(), seconds=seconds, pcm=pcm)


async def to_ogg_opus(audio: bytes, *, timeout: float) -> bytes:
    """Any audio → OGG/Opus, what chat apps play as a voice note (Telegram's sendVoice, WhatsApp's audio)."""
    code, out, err = await _transcode(["ogg-opus"], audio, timeout)
    if code != 0 or not out:
        raise VoiceError(f"could not encode OGG/Opus: {err.decode(errors='replace').strip()[-200:]}")
    return out


async def _transcode(args: list[str], audio: bytes, timeout: float) -> tuple[int, bytes, bytes]:
    if importlib.util.find_spec("av") is None:
        raise VoiceError("audio conversion needs PyAV: pip install 'switchboard[voice]'")
    # -I: the child imports only the standard library and PyAV, not this package (a quick start).
    return await run([sys.executable, "-I", transcode.__file__, *args], stdin=audio, timeout=timeout)
