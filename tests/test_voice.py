"""core.voice: speech through a fake OpenAI-compatible audio server (the real `openai` client and multipart), the
offline paths (espeak-ng, the packaged Whisper model when installed), and every way input is refused."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.errors import (
    AudioTooLarge,
    AudioTooLong,
    NotAudio,
    TextTooLong,
    VoiceError,
    VoiceNotConfigured,
    VoiceRejected,
)
from core.voice import Voice, open_voice, whisper
from core.voice.audio import decode, run, to_ogg_opus
from core.voice.espeak import EspeakSpeaker
from tests.fakes.openai_audio_server import FakeOpenAIAudio

SPOKEN = "Hello. How do I reset my password for the admin console? The link in the email expired."


def espeak_wav(text: str) -> bytes:
    return subprocess.run(["espeak-ng", "--stdout", text], capture_output=True, check=True, timeout=30).stdout


def ffmpeg(audio: bytes, *args: str) -> bytes:
    """Re-encode `audio` (stdin → stdout), as a phone or a browser would have recorded it."""
    command = ["ffmpeg", "-v", "error", "-i", "-", *args, "-"]
    return subprocess.run(command, input=audio, capture_output=True, check=True, timeout=30).stdout


@pytest.fixture(scope="module")
def note() -> bytes:
    return espeak_wav(SPOKEN)  # about 6 seconds of speech


@pytest.fixture(scope="module")
def audio_api() -> Iterator[FakeOpenAIAudio]:
    fake = FakeOpenAIAudio()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    if "audio_api" in request.fixturenames:
        fake = request.getfixturevalue("audio_api")
        fake.fail, fake.uploads[:], fake.speeches[:] = False, [], []


def voice_settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **extra)


def remote(audio_api: FakeOpenAIAudio, tmp_path: Path, **extra: Any) -> Settings:
    return voice_settings(
        tmp_path, stt_base_url=audio_api.v1, stt_api_key="sk-stt", stt_model="whisper-large-v3",
        tts_base_url=audio_api.v1, tts_api_key="sk-tts", tts_model="tts-1-hd", tts_voice="nova", **extra,
    )  # fmt: skip


async def test_transcribes_through_an_openai_compatible_endpoint(
    audio_api: FakeOpenAIAudio, tmp_path: Path, note: bytes
) -> None:
    async with open_voice(remote(audio_api, tmp_path)) as voice:
        assert voice.info.stt == "whisper-large-v3"
        text = await voice.transcribe(note, filename="note.wav", content_type="audio/wav")
    assert text == audio_api.transcript
    (upload,) = audio_api.uploads
    assert upload.fields == {"model": "whisper-large-v3"}
    assert (upload.filename, upload.audio, upload.authorization) == ("note.wav", note, "Bearer sk-stt")


async def test_a_telegram_voice_note_is_sent_as_recorded(audio_api: FakeOpenAIAudio, tmp_path: Path, note: bytes):
    """OGG/Opus is a format the endpoint reads: sent unchanged, named .ogg whatever the upload was called."""
    ogg = await to_ogg_opus(note, timeout=30)
    async with open_voice(remote(audio_api, tmp_path)) as voice:
        assert await voice.transcribe(ogg, filename="file_12.oga", content_type="audio/ogg") == audio_api.transcript
    (upload,) = audio_api.uploads
    assert (upload.filename, upload.audio) == ("file_12.ogg", ogg)


async def test_other_formats_are_converted_to_wav(audio_api: FakeOpenAIAudio, tmp_path: Path, note: bytes) -> None:
    sun_au = ffmpeg(note, "-f", "au")  # a container the endpoint does not read
    async with open_voice(remote(audio_api, tmp_path)) as voice:
        await voice.transcribe(sun_au, filename="note.au", content_type="audio/basic")
    (upload,) = audio_api.uploads
    assert upload.filename == "audio.wav" and upload.audio.startswith(b"RIFF")
    assert (await decode(upload.audio, max_seconds=60, timeout=30)).seconds == pytest.approx(
        (await decode(note, max_seconds=60, timeout=30)).seconds, abs=0.1
    )


async def test_speaks_through_an_openai_compatible_endpoint(audio_api: FakeOpenAIAudio, tmp_path: Path) -> None:
    async with open_voice(remote(audio_api, tmp_path)) as voice:
        assert voice.info.tts == "tts-1-hd (nova)"
        speech = await voice.speak("Open Settings, then Security.")
    assert speech.content_type == "audio/mpeg" and speech.audio.startswith((b"ID3", b"\xff"))
    assert audio_api.speeches == [
        {"model": "tts-1-hd", "voice": "nova", "input": "Open Settings, then Security.", "response_format": "mp3"}
    ]


async def test_a_failing_service_is_a_voice_error(audio_api: FakeOpenAIAudio, tmp_path: Path, note: bytes) -> None:
    audio_api.fail = True
    async with open_voice(remote(audio_api, tmp_path)) as voice:
        with pytest.raises(VoiceError, match="speech-to-text service failed") as stt:
            await voice.transcribe(note)
        with pytest.raises(VoiceError, match="text-to-speech service failed") as tts:
            await voice.speak("hello")
    assert not isinstance(stt.value, VoiceRejected) and not isinstance(tts.value, VoiceRejected)


async def test_espeak_speaks_offline(tmp_path: Path) -> None:
    async with open_voice(voice_settings(tmp_path)) as voice:  # no TTS_BASE_URL
        assert voice.info.tts == "espeak-ng (en-us)"
        speech = await voice.speak("-v Your order has shipped.")  # a leading dash is text, not an option
    assert speech.content_type == "audio/wav" and speech.audio[8:12] == b"WAVE"
    assert int.from_bytes(speech.audio[4:8], "little") == len(speech.audio) - 8  # the header's real length
    assert (await decode(speech.audio, max_seconds=60, timeout=30)).seconds > 1.0


async def test_a_voice_note_reply_is_ogg_opus(tmp_path: Path) -> None:
    async with open_voice(voice_settings(tmp_path)) as voice:
        speech = await voice.speak("Your order has shipped.", voice_note=True)
    assert speech.content_type == "audio/ogg" and speech.audio.startswith(b"OggS") and b"OpusHead" in speech.audio[:100]


async def test_a_missing_tool_is_a_voice_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, note: bytes) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on it
    with pytest.raises(VoiceError, match=r"espeak-ng is not installed"):
        await EspeakSpeaker(voice="en-us", timeout=10).speak("hello")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "av" else real_find_spec(name, *a)
    )
    with pytest.raises(VoiceError, match=r"audio conversion needs PyAV: pip install 'switchboard\[voice\]'"):
        await decode(note, max_seconds=60, timeout=10)


async def test_a_cancelled_conversion_kills_its_child_process(tmp_path: Path) -> None:
    """Shutdown or a cancelled bot task must not leave a decoder running on its own."""
    marker = tmp_path / "pid"
    child = f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    task = asyncio.create_task(run([sys.executable, "-c", child], timeout=120))
    for _ in range(200):
        if marker.exists() and marker.read_text():
            break
        await asyncio.sleep(0.05)
    pid = int(marker.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not Path(f"/proc/{pid}").exists(), "the child outlived its cancelled caller"


async def test_too_large_is_refused_before_anything_runs(
    audio_api: FakeOpenAIAudio, tmp_path: Path, note: bytes
) -> None:
    async with open_voice(remote(audio_api, tmp_path, voice_max_mb=0.05)) as voice:
        with pytest.raises(AudioTooLarge, match=r"the limit is 0.05 MB"):
            await voice.transcribe(note)
    assert audio_api.uploads == []


@pytest.mark.parametrize("header", ["declared", "none"])
async def test_too_long_is_refused(audio_api: FakeOpenAIAudio, tmp_path: Path, note: bytes, header: str) -> None:
    """By the duration the header declares, and by the decoded length when it declares none (WebM written as a
    stream, as MediaRecorder does, has no Duration element)."""
    recording = note if header == "declared" else ffmpeg(note, "-c:a", "libopus", "-f", "webm")
    async with open_voice(remote(audio_api, tmp_path, voice_max_seconds=3)) as voice:
        with pytest.raises(AudioTooLong, match="the limit is 3 s" if header == "declared" else "more than 3 s"):
            await voice.transcribe(recording)
    assert audio_api.uploads == []


@pytest.mark.parametrize("data", [b"hello, not audio", b"\x89PNG\r\n\x1a\n" + bytes(200), b""])
async def test_not_audio_is_refused(audio_api: FakeOpenAIAudio, tmp_path: Path, data: bytes) -> None:
    async with open_voice(remote(audio_api, tmp_path)) as voice:
        with pytest.raises(NotAudio, match="not audio"):
            await voice.transcribe(data)
    assert audio_api.uploads == []


async def test_text_too_long_or_empty_is_refused(tmp_path: Path) -> None:
    async with open_voice(voice_settings(tmp_path, tts_max_chars=20)) as voice:
        with pytest.raises(TextTooLong, match="at most 20"):
            await voice.speak("x" * 21)
        with pytest.raises(TextTooLong, match="no text"):
            await voice.speak("   ")


async def test_without_any_service_voice_says_what_to_set(tmp_path: Path, note: bytes) -> None:
    voice = Voice(settings=voice_settings(tmp_path), transcriber=None, speaker=None)
    assert (voice.info.stt, voice.info.tts) == (None, None)
    with pytest.raises(VoiceNotConfigured, match=r"speech-to-text is not configured.*STT_BASE_URL"):
        await voice.transcribe(note)
    with pytest.raises(VoiceNotConfigured, match=r"text-to-speech is not configured.*TTS_BASE_URL"):
        await voice.speak("hello")


async def test_stt_is_off_without_an_endpoint_or_the_offline_model(
    tmp_path: Path, note: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(whisper, "available", lambda: False)  # as without the `voice` extra
    async with open_voice(voice_settings(tmp_path)) as voice:
        assert voice.info.stt is None
        with pytest.raises(VoiceNotConfigured):
            await voice.transcribe(note)


@pytest.mark.skipif(not whisper.available(), reason="the offline model (switchboard[voice]) is not installed")
async def test_offline_whisper_transcribes_a_real_recording(tmp_path: Path, note: bytes) -> None:
    ogg = await to_ogg_opus(note, timeout=30)
    async with open_voice(voice_settings(tmp_path)) as voice:
        assert voice.info.stt == whisper.MODEL_NAME
        text = await voice.transcribe(ogg, filename="voice.oga", content_type="audio/ogg")
    assert "reset my password" in text.lower() and "admin console" in text.lower()
    assert (tmp_path / "models" / "whisper-base-ct2" / "model.bin").stat().st_size > 100_000_000


async def test_offline_whisper_failures_are_voice_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, note: bytes
) -> None:
    """A model that cannot be joined or loaded (OSError, CTranslate2's RuntimeError) is a VoiceError, which every
    surface turns into a polite refusal; the load is tried again by the next request."""
    calls = []

    def broken(self: whisper.LocalWhisper) -> Any:
        calls.append(1)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(whisper.LocalWhisper, "_load", broken)
    local = whisper.LocalWhisper(models_dir=tmp_path, timeout=5)
    for _ in range(2):
        with pytest.raises(VoiceError, match="No space left on device"):
            await local.transcribe(note, filename="a.wav", content_type="audio/wav")
    assert len(calls) == 2


async def test_offline_whisper_times_out_at_voice_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, note: bytes
) -> None:
    monkeypatch.setattr(whisper.LocalWhisper, "_load", lambda self: time.sleep(1.5))
    local = whisper.LocalWhisper(models_dir=tmp_path, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(VoiceError, match=r"longer than 0\.3 s"):
        await local.transcribe(note, filename="a.wav", content_type="audio/wav")
    assert time.monotonic() - started < 1.0, "the caller is answered at the timeout, not when the load ends"
