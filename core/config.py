"""Settings: the only place that reads the environment (and `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

WEAVIATE_VERSION = "1.39.0"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore", populate_by_name=True
    )

    environment: Literal["development", "production"] = Field("development", validation_alias="SWITCHBOARD_ENV")
    data_dir: Path = Field(Path(".switchboard"), validation_alias="SWITCHBOARD_DATA_DIR")
    default_kb: str = Field("default", validation_alias="SWITCHBOARD_KB")

    # An external Weaviate; when unset the kit runs a local one (see core.weaviate_local).
    weaviate_url: str | None = Field(None, validation_alias="WEAVIATE_URL")
    weaviate_api_key: SecretStr | None = Field(None, validation_alias="WEAVIATE_API_KEY")
    weaviate_grpc_port: int | None = Field(None, validation_alias="WEAVIATE_GRPC_PORT")
    weaviate_timeout: float = Field(10.0, validation_alias="WEAVIATE_TIMEOUT")
    # The local Weaviate: ports (cluster ports follow the HTTP port) and binary.
    weaviate_local_port: int = Field(8099, validation_alias="WEAVIATE_LOCAL_PORT")
    weaviate_local_grpc_port: int = Field(50099, validation_alias="WEAVIATE_LOCAL_GRPC_PORT")
    weaviate_binary: Path | None = Field(None, validation_alias="WEAVIATE_BINARY")
    weaviate_startup_timeout: float = Field(90.0, validation_alias="WEAVIATE_STARTUP_TIMEOUT")

    # Embeddings: local ONNX (fastembed) by default, or any OpenAI-compatible endpoint.
    embed_provider: Literal["local", "openai"] = Field("local", validation_alias="EMBED_PROVIDER")
    embed_model: str = Field("sentence-transformers/all-MiniLM-L6-v2", validation_alias="EMBED_MODEL")
    embed_model_path: Path | None = Field(None, validation_alias="EMBED_MODEL_PATH")
    embed_base_url: str | None = Field(None, validation_alias="EMBED_BASE_URL")
    embed_api_key: SecretStr | None = Field(None, validation_alias="EMBED_API_KEY")
    embed_batch_size: int = Field(32, ge=1, le=2048, validation_alias="EMBED_BATCH_SIZE")
    embed_threads: int | None = Field(None, ge=1, validation_alias="EMBED_THREADS")

    # Chunking, in characters.
    chunk_size: int = Field(1000, ge=200, le=8000, validation_alias="CHUNK_SIZE")
    chunk_overlap: int = Field(150, ge=0, validation_alias="CHUNK_OVERLAP")

    # Retrieval.
    search_alpha: float = Field(0.75, ge=0.0, le=1.0, validation_alias="SEARCH_ALPHA")
    search_top_k: int = Field(5, ge=1, le=100, validation_alias="SEARCH_TOP_K")

    # Fetching URLs during ingestion.
    fetch_timeout: float = Field(20.0, validation_alias="FETCH_TIMEOUT")
    fetch_max_mb: float = Field(25.0, validation_alias="FETCH_MAX_MB")
    fetch_user_agent: str = Field("SwitchboardBot/0.1 (+self-hosted)", validation_alias="FETCH_USER_AGENT")
    max_file_mb: float = Field(50.0, validation_alias="INGEST_MAX_FILE_MB")

    @field_validator("default_kb")
    @classmethod
    def _kb_name(cls, value: str) -> str:
        from core.kb import validate_kb_name

        return validate_kb_name(value)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size // 2:
            raise ValueError("CHUNK_OVERLAP must be less than half of CHUNK_SIZE")
        if self.environment == "production" and self.weaviate_url and not self.weaviate_api_key:
            raise ValueError("WEAVIATE_API_KEY is required for an external Weaviate in production")
        for name in ("weaviate_api_key", "embed_api_key"):
            secret = getattr(self, name)
            if self.environment == "production" and secret and secret.get_secret_value().startswith("change-me"):
                raise ValueError(f"{name.upper()} still holds the placeholder from .env.example")
        return self

    @property
    def weaviate_dir(self) -> Path:
        return self.data_dir / "weaviate"


@lru_cache
def get_settings() -> Settings:
    return Settings()
